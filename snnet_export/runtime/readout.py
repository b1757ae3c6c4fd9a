"""Read-outs of the closed loop (:class:`~.adaptive.LatencyTracker`'s diagnostics): tail ratios,
per-stitch observed latencies, and a description for ``Selector.describe``. Nothing here changes state."""
from __future__ import annotations

import threading
from collections import deque
from typing import Any


class TrackerReadout:
    """Diagnostics mixed into :class:`~.adaptive.LatencyTracker` (which sets the attributes below)."""

    _lock: threading.Lock
    _seen: dict[int, deque[float]]
    _tails: dict[str, float] | None
    _calls: int
    state: str
    hold: bool
    correction: float
    inflation: float | None

    def predicted_ms(self, stitch: int, batch: int) -> float:  # LatencyTracker defines it
        raise NotImplementedError

    @property
    def tails(self) -> dict[str, float] | None:
        """``{"p50", "p90", "p99"}`` ratios to the profiled median, ``None`` until ``min_samples``."""
        return self._tails

    def tail(self, stat: str) -> float | None:
        """Current ratio to the profiled median at percentile ``stat``, ``None`` until enough samples."""
        return None if (tails := self._tails) is None else tails.get(stat)

    def observed(self, stitch: int) -> dict[str, Any] | None:
        """``{"calls", "p50_ms_per_image"}`` over the stitch's recent calls, ``None`` if never run."""
        with self._lock:
            seen = sorted(self._seen.get(stitch, ()))
        if not seen:
            return None
        return {"calls": len(seen), "p50_ms_per_image": round(seen[len(seen) // 2], 4)}

    def describe(self, stitch: int, batch: int) -> dict[str, Any]:
        """State, factors, tail ratios, predicted and observed median latency (ms) of ``stitch``."""
        seen = self.observed(stitch)
        return {"state": self.state, "hold": self.hold, "correction": round(self.correction, 4), "batch": batch,
                "inflation": None if self.inflation is None else round(self.inflation, 4),
                "tail_ratios": {k: round(v, 4) for k, v in (self.tails or {}).items()} or None,
                "predicted_ms": round(self.predicted_ms(stitch, batch), 4),
                "observed_ms": None if seen is None else round(seen["p50_ms_per_image"] * batch, 4),
                "observed_calls": 0 if seen is None else seen["calls"]}

    @property
    def calls(self) -> int:
        """Calls recorded so far."""
        return self._calls

