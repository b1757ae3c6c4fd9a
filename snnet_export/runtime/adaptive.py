"""Closed loop for the selector: how much slower (or faster) the device runs now than its profile.

The profile was measured once; thermal throttling, DVFS or other processes change the speed later.
``LatencyTracker`` records the latency of every call the selector serves and keeps, for the last
``window`` calls (any stitch), the ratio *observed latency / profiled median latency* of the stitch
that ran (the first call after a switch is a warm-up and left out). Its median is the
**correction**: 1.0 when the device runs as profiled, 2.0 when every stitch takes twice as long;
its upper quantiles (``tail("p90")``, ``tail("p99")``, nearest rank) say how slow the slow calls
are now, which under contention grows faster than the median (measured: median x2, p99 x4). The
selector predicts a stitch's throughput as profiled / correction and its latency percentile as
profiled median x that tail ratio (profiled percentile x correction until ``min_samples`` calls
were seen), so a stitch that has never run yet is predicted from the profile and the current
state of the device; it re-chooses whenever the median or a tail ratio moves by more than
``min_change``. The median follows a step change after about ``window / 2`` calls; the tail rises
after one or two slow calls and falls back once they leave the window.

Memory is bounded: one ``window``-long deque plus one ``history``-long deque per stitch that ran.
``record`` costs a lock, two deque appends and, every ``check_every`` calls, a median of
``window`` floats (about 1-2 us in CPython; measured in ``benchmarks/load_shift.py``).
Imports nothing beyond the standard library.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any, Mapping

#: calls whose median ratio is the correction; a step change is followed after ~window/2 calls
DEFAULT_WINDOW = 20
#: calls seen before the tail quantiles replace the profile's own percentiles
MIN_SAMPLES = 10
#: re-estimate the correction every this many calls (the cost of a median, amortised)
DEFAULT_CHECK_EVERY = 3
#: re-choose the stitch when the correction moved by more than this (relative)
DEFAULT_MIN_CHANGE = 0.03


class LatencyTracker:
    """Per-stitch observed latencies and the current slowdown / speed-up correction.

    Args:
        profile_ms: ``{(stitch id, batch): profiled median latency in ms}``; a batch not profiled
            is scaled linearly from the nearest profiled batch of that stitch.
        window: calls (over all stitches) whose median ratio is the correction.
        check_every: recompute the correction every this many calls.
        min_change: relative change of the correction that asks the selector to re-choose.
        history: latencies kept per stitch for ``observed`` (bounded memory).
    """

    def __init__(self, profile_ms: Mapping[tuple[int, int], float], window: int = DEFAULT_WINDOW,
                 check_every: int = DEFAULT_CHECK_EVERY, min_change: float = DEFAULT_MIN_CHANGE,
                 history: int = 64, min_samples: int = MIN_SAMPLES) -> None:
        if window < 1 or check_every < 1 or history < 1:
            raise ValueError("window, check_every and history must be >= 1")
        self._profile = dict(profile_ms)
        self._expected: dict[tuple[int, int], float] = {}
        self._ratios: deque[float] = deque(maxlen=window)
        self._seen: dict[int, deque[float]] = {}
        self._history = history
        self._check_every = check_every
        self._threshold = math.log1p(min_change)
        self._lock = threading.Lock()
        self._calls = 0
        self.correction = 1.0  # read without the lock: a float assignment is atomic
        self._tails: dict[str, float] | None = None  # replaced whole, never mutated: safe to read
        self._min_samples = min(min_samples, window)
        self._chosen_with = (1.0, 1.0, 1.0)
        self._last: int | None = None

    def expected_ms(self, stitch: int, batch: int) -> float:
        """Profiled median latency of ``stitch`` at ``batch`` (ms), before correction."""
        key = (stitch, batch)
        ms = self._expected.get(key)
        if ms is None:
            near = [b for s, b in self._profile if s == stitch]
            if not near:
                raise KeyError(f"stitch {stitch} is not in the profile")
            nb = min(near, key=lambda b: abs(b - batch))
            ms = self._expected[key] = self._profile[stitch, nb] * batch / nb
        return ms

    def predicted_ms(self, stitch: int, batch: int) -> float:
        """Profiled median latency times the current correction (ms): the predicted median."""
        return self.expected_ms(stitch, batch) * self.correction

    @property
    def tails(self) -> dict[str, float] | None:
        """``{"p50", "p90", "p99"}`` ratios of the window, ``None`` until ``min_samples`` calls."""
        return self._tails

    def tail(self, stat: str) -> float | None:
        """Current ratio at latency percentile ``stat`` (``p50``/``p90``/``p99``), ``None`` until enough calls."""
        tails = self._tails
        return None if tails is None else tails.get(stat)

    def record(self, stitch: int, batch: int, seconds: float) -> bool:
        """Add one served call; ``True`` when the correction or a tail moved enough to re-choose."""
        ms = seconds * 1e3
        ratio = ms / self.expected_ms(stitch, batch)
        with self._lock:
            if stitch == self._last:  # the first call after a switch warms the stitch up: not a sample
                self._ratios.append(ratio)
            self._last = stitch
            seen = self._seen.get(stitch)
            if seen is None:
                seen = self._seen[stitch] = deque(maxlen=self._history)
            seen.append(ms / batch)
            self._calls += 1
            if self._calls % self._check_every or not self._ratios:
                return False
            ordered = sorted(self._ratios)
            n = len(ordered)
            self.correction = ordered[n // 2]
            if n >= self._min_samples:
                self._tails = {"p50": self.correction, "p90": ordered[math.ceil(0.9 * n) - 1],
                               "p99": ordered[math.ceil(0.99 * n) - 1]}
            now = (self.correction, self.tail("p90") or 1.0, self.tail("p99") or 1.0)
            if all(abs(math.log(a / b)) < self._threshold for a, b in zip(now, self._chosen_with)):
                return False
            self._chosen_with = now
            return True

    def observed(self, stitch: int) -> dict[str, Any] | None:
        """``{"calls", "p50_ms_per_image"}`` over the stitch's recent calls, ``None`` if never run."""
        with self._lock:
            seen = sorted(self._seen.get(stitch, ()))
        if not seen:
            return None
        return {"calls": len(seen), "p50_ms_per_image": round(seen[len(seen) // 2], 4)}

    def describe(self, stitch: int, batch: int) -> dict[str, Any]:
        """Correction, tail ratios, predicted and observed median latency (ms) of ``stitch`` at ``batch``."""
        seen = self.observed(stitch)
        return {"correction": round(self.correction, 4), "batch": batch,
                "tail_ratios": {k: round(v, 4) for k, v in (self.tails or {}).items()} or None,
                "predicted_ms": round(self.predicted_ms(stitch, batch), 4),
                "observed_ms": None if seen is None else round(seen["p50_ms_per_image"] * batch, 4),
                "observed_calls": 0 if seen is None else seen["calls"]}

    @property
    def calls(self) -> int:
        """Calls recorded so far."""
        return self._calls

    def reset(self) -> None:
        """Forget every observation (correction back to 1.0), e.g. after a new profile."""
        with self._lock:
            self._ratios.clear()
            self._seen.clear()
            self.correction, self._tails, self._chosen_with, self._last = 1.0, None, (1.0, 1.0, 1.0), None
