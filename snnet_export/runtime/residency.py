"""A memory budget for resident stitches: load on demand, evict the least recently used.

    res = Residency(loader, weight_bytes=451 << 20, budget_bytes=600 << 20, estimates={0: 2 << 20, ...})
    y = res.run(3, x)          # loads stitch 3 if it is not resident (evicting idle ones), runs it

What is counted (``docs/memory.md``): the weight file, once (every session reads it through one
shared memory map), plus each resident session's private memory: the larger of its estimate,
:func:`estimate_session_bytes` of its graph, and its measured size, the growth of the process's
anonymous resident memory (``RssAnon``) while it is created (loads are serialised so each is
measured alone; a load that overlaps a call on another thread is not measured, since the call's
activations would be counted; a heap that reuses pages freed by an eviction can show no growth,
hence the estimate as a floor). Activations are
not resident: the selector's sessions hand them back after each call, so a call in flight adds its
activations for its duration only (measured in ``benchmarks/results/selector.md``).

What the accounting cannot attribute to a session (the C heap that loads and runs leave behind,
library code paged in, heap fragmentation) is caught by measuring: whenever no call is in flight
(after each call and each load), the process's real RSS growth since the folder was opened is
sampled (``/proc/self/statm``, a few microseconds), and the budget is held against the larger of
the accounted and the measured figure; when the measured one is over, idle stitches are evicted,
least recently used first, and the heap is trimmed (``trim``) until it fits.

Thread safety: any number of threads may call :meth:`Residency.run`. A session in use is never
evicted (each call holds a lease); a load that needs room held by busy sessions waits for a call
to finish. Two threads asking for the same cold stitch load it once. Imports the standard library
only.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import MemoryBudgetError, SelectorError

log = logging.getLogger(__name__)

MiB = 1 << 20
#: estimated private bytes of an ONNX Runtime session per byte of its graph file (measured on
#: full-size DeiT: 0.9-1.8 MiB per ~30 KB graph, i.e. 31-62x; ``benchmarks/results/selector.md``)
BYTES_PER_GRAPH_BYTE = 64
#: cold-switch timings kept for the percentiles
_KEEP = 512
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

Runner = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def rss_anon_bytes() -> int | None:
    """This process's anonymous resident memory (``RssAnon`` of ``/proc/self/status``), or ``None`` off Linux."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_STATM: list[int] = []  # one descriptor of /proc/self/statm, opened on first use


def rss_bytes() -> int | None:
    """This process's resident set size (``/proc/self/statm``, read with one ``pread``), or ``None`` off Linux."""
    try:
        if not _STATM:
            _STATM.append(os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_STATM[0], 128, 0).split()[1]) * _PAGE
    except (OSError, IndexError, ValueError, AttributeError):  # no /proc, or no os.pread (Windows)
        return None


def estimate_session_bytes(graph_bytes: int) -> int:
    """A session's private memory before it was ever measured: :data:`BYTES_PER_GRAPH_BYTE` x its graph file."""
    return max(MiB // 4, BYTES_PER_GRAPH_BYTE * int(graph_bytes))


def minimum_budget_bytes(weight_bytes: int, estimates: Mapping[int, int]) -> int:
    """The smallest budget that can run every stitch: the weights plus the largest session."""
    return weight_bytes + max(estimates.values(), default=0)


def check_budget(budget_bytes: int, weight_bytes: int, estimates: Mapping[int, int]) -> None:
    """Refuse a budget below :func:`minimum_budget_bytes` with one line that says the minimum."""
    need = minimum_budget_bytes(weight_bytes, estimates)
    if budget_bytes < need:
        raise MemoryBudgetError(
            f"max_resident_mb={budget_bytes / MiB:.0f} cannot hold this folder: the minimum is "
            f"{-(-need // MiB)} MiB (weight file {weight_bytes / MiB:.0f} MiB + the largest session "
            f"{max(estimates.values(), default=0) / MiB:.1f} MiB); raise the budget or use a smaller folder")


@dataclass
class _Resident:
    runner: Runner
    bytes: int
    measured: bool
    leases: int = 0


class Residency:
    """Keep stitches resident within ``budget_bytes``; load on use, evict the least recently used.

    Args:
        loader: opens stitch ``id`` and returns its runner (called without any lock held but
            one load at a time); the runner is dropped, not closed, on eviction.
        weight_bytes: the shared weight file, counted once.
        budget_bytes: weights plus resident sessions never exceed this.
        estimates: each stitch's estimated session bytes (:func:`estimate_session_bytes`).
        measure: returns the bytes that session loads grow (default :func:`rss_anon_bytes`).
        measure_rss: returns the process's RSS (default :func:`rss_bytes`; ``None``: not measured).
        rss_baseline: the RSS before the folder was opened (default: ``measure_rss()`` now); the
            measured growth is RSS minus this.
        trim: called (no lock held) after evictions to hand freed heap pages back to the system.

    Raises:
        MemoryBudgetError: the budget cannot hold the weights and the largest session.
    """

    def __init__(self, loader: Callable[[int], Runner], weight_bytes: int, budget_bytes: int,
                 estimates: Mapping[int, int], measure: Callable[[], int | None] = rss_anon_bytes,
                 clock: Callable[[], float] = time.perf_counter, *,
                 measure_rss: Callable[[], int | None] | None = rss_bytes, rss_baseline: int | None = None,
                 trim: Callable[[], object] | None = None) -> None:
        check_budget(budget_bytes, weight_bytes, estimates)
        self.loader, self.weight_bytes, self.budget_bytes = loader, int(weight_bytes), int(budget_bytes)
        self.estimates = dict(estimates)
        self.measured: dict[int, int] = {}  # id -> RssAnon growth of its last quiet load
        self._measure, self._clock = measure, clock
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()
        self._resident: OrderedDict[int, _Resident] = OrderedDict()  # least recently used first
        self._loading: dict[int, int] = {}  # id -> bytes reserved while it loads
        self._busy = 0  # calls in flight
        self._cold_ms: deque[float] = deque(maxlen=_KEEP)
        self.loads = self.evictions = 0
        self.closed = False
        self._measure_rss, self._trim = measure_rss, trim
        self._rss0 = rss_baseline if rss_baseline is not None or measure_rss is None else measure_rss()
        self.measured_growth = 0  # real RSS growth since the folder was opened, at the last quiet sample
        self.max_measured_growth = self.max_accounted = 0
        self._warned = False

    # ---- accounting (callers hold _cond) ----
    @property
    def accounted_bytes(self) -> int:
        """Weights plus resident and loading sessions, as counted."""
        return self.weight_bytes + sum(r.bytes for r in self._resident.values()) + sum(self._loading.values())

    @property
    def used_bytes(self) -> int:
        """What the budget is held against: the larger of the accounted and the measured bytes
        (the measured growth plus what is loading now, which the last sample did not see)."""
        return max(self.accounted_bytes, self.measured_growth + sum(self._loading.values()))

    def _sample(self) -> None:
        """Record the real RSS growth (callers hold _cond, with no call in flight)."""
        now = self._measure_rss() if self._measure_rss is not None and self._rss0 is not None else None
        if now is not None:
            self.measured_growth = max(0, now - self._rss0)  # type: ignore[operator]
            self.max_measured_growth = max(self.max_measured_growth, self.measured_growth)
        self.max_accounted = max(self.max_accounted, self.accounted_bytes)

    def _size(self, cfg_id: int) -> int:
        return self.estimates.get(cfg_id) or max(self.estimates.values(), default=MiB)

    def _evict_for(self, need: int, keep: int | None = None) -> list[_Resident]:
        """Drop idle least-recently-used sessions until ``need`` more bytes fit; returns what was dropped."""
        dropped = []
        for cfg_id in list(self._resident):
            if self.used_bytes + need <= self.budget_bytes:
                break
            r = self._resident[cfg_id]
            if r.leases == 0 and cfg_id != keep:
                dropped.append(self._resident.pop(cfg_id))
                self.measured_growth = max(0, self.measured_growth - r.bytes)  # until the next sample
                self.evictions += 1
                log.info("evicted stitch %d (%.1f MiB)", cfg_id, r.bytes / MiB)
        return dropped

    # ---- leases ----
    def acquire(self, cfg_id: int) -> Runner:
        """Lease stitch ``cfg_id``'s runner (loading it if needed); pair with :meth:`release`."""
        freed: list[_Resident] = []
        with self._cond:
            t0 = None
            while True:
                if self.closed:
                    raise SelectorError("this Selector is closed: open a new one")
                r = self._resident.get(cfg_id)
                if r is not None:
                    r.leases += 1
                    self._busy += 1
                    self._resident.move_to_end(cfg_id)
                    return r.runner
                t0 = self._clock() if t0 is None else t0
                if cfg_id not in self._loading:
                    need = self._size(cfg_id)
                    freed += self._evict_for(need)
                    if self.used_bytes + need <= self.budget_bytes or not (self._resident or self._loading):
                        self._loading[cfg_id] = need
                        break
                self._cond.wait()  # the rest of the room is held by busy sessions or loads: wait
        self._drop(freed)
        return self._load(cfg_id, t0)

    def _drop(self, dropped: list[_Resident]) -> None:
        """Free evicted sessions (no lock held) and hand their heap pages back (``trim``)."""
        if dropped:
            dropped.clear()
            if self._trim is not None:
                self._trim()

    def _load(self, cfg_id: int, t0: float) -> Runner:
        """Open ``cfg_id`` (its bytes reserved), measure it, make it resident with one lease."""
        with self._load_lock:
            with self._cond:
                quiet = self._busy == 0
            before = self._measure()
            try:
                runner = self.loader(cfg_id)
            except BaseException:
                with self._cond:
                    del self._loading[cfg_id]
                    self._cond.notify_all()
                raise
            after = self._measure()
        with self._cond:
            quiet = quiet and self._busy == 0
            measured = quiet and before is not None and after is not None
            grown = max(0, after - before) if measured else 0  # type: ignore[operator]
            size = max(grown, self._size(cfg_id))  # a heap reusing freed pages can show ~0 growth
            if measured:
                self.measured[cfg_id] = grown
            del self._loading[cfg_id]
            self._resident[cfg_id] = _Resident(runner, size, measured, leases=1)
            self._busy += 1
            dropped = self._evict_for(0, keep=cfg_id)
            self.loads += 1
            self._cold_ms.append((self._clock() - t0) * 1e3)
            if self.used_bytes > self.budget_bytes:
                log.warning("stitch %d measured %.1f MiB: %.0f MiB resident, over the %.0f MiB budget until "
                            "a busy stitch can be evicted", cfg_id, size / MiB, self.used_bytes / MiB,
                            self.budget_bytes / MiB)
            self._cond.notify_all()
        self._drop(dropped)
        return runner

    def release(self, cfg_id: int) -> None:
        """End one lease of ``cfg_id`` (taken with :meth:`acquire`)."""
        with self._cond:
            r = self._resident.get(cfg_id)
            if r is not None:
                r.leases -= 1
            self._busy -= 1
            quiet = self._busy == 0
            self._cond.notify_all()
        if quiet:
            self._settle(cfg_id)

    def _settle(self, keep: int) -> None:
        """At a quiet point (no call in flight): sample the real RSS growth and, while it or the
        accounted bytes exceed the budget, evict idle stitches (least recently used first, ``keep``,
        the one just used, last) and trim the heap, re-sampling after each round."""
        while True:
            with self._cond:
                if self._busy or self.closed:
                    return
                self._sample()
                if self.used_bytes <= self.budget_bytes:
                    return
                dropped = self._evict_for(0, keep=keep)
                if not dropped:
                    if not self._warned:
                        self._warned = True
                        log.warning("measured growth %.0f MiB exceeds the %.0f MiB budget with one stitch "
                                    "resident: raise max_resident_mb", self.measured_growth / MiB, self.budget_bytes / MiB)
                    return
                log.info("measured growth %.1f MiB over the %.0f MiB budget: evicted %d", self.measured_growth / MiB,
                         self.budget_bytes / MiB, len(dropped))
            self._drop(dropped)

    def run(self, cfg_id: int, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run ``x`` on stitch ``cfg_id``, loading it first when it is not resident."""
        runner = self.acquire(cfg_id)
        try:
            return runner(x)
        finally:
            self.release(cfg_id)

    def preload(self, ids: Sequence[int]) -> list[int]:
        """Load ``ids`` in order while they fit without evicting; returns those loaded."""
        done = []
        for cfg_id in ids:
            with self._cond:
                fits = self.used_bytes + self._size(cfg_id) <= self.budget_bytes
            if not fits:
                break
            self.acquire(cfg_id)
            self.release(cfg_id)
            done.append(cfg_id)
        return done

    # ---- reporting ----
    def resident(self) -> list[int]:
        """Resident stitch ids, least recently used first."""
        with self._cond:
            return list(self._resident)

    def describe(self) -> dict[str, Any]:
        """Budget, what is counted against it, and the cold-switch cost (ms, p50/p99 of recent loads)."""
        with self._cond:
            cold = np.array(self._cold_ms) if self._cold_ms else None
            return {
                "budget_mb": round(self.budget_bytes / MiB, 1), "weights_mb": round(self.weight_bytes / MiB, 1),
                "resident_mb": round(self.used_bytes / MiB, 1), "accounted_mb": round(self.accounted_bytes / MiB, 1),
                "measured_growth_mb": round(self.measured_growth / MiB, 1),
                "max_accounted_mb": round(self.max_accounted / MiB, 1),
                "max_measured_growth_mb": round(self.max_measured_growth / MiB, 1), "resident": list(self._resident),
                "session_mb": {i: round(r.bytes / MiB, 2) for i, r in self._resident.items()},
                "measured_mb": {i: round(b / MiB, 2) for i, b in self.measured.items()},
                "loads": self.loads, "evictions": self.evictions,
                "cold_switch_ms": None if cold is None else {
                    "p50": round(float(np.percentile(cold, 50)), 2), "p99": round(float(np.percentile(cold, 99)), 2),
                    "n": int(cold.size)},
            }

    def close(self) -> None:
        """Drop every idle session; later calls raise :class:`SelectorError`."""
        with self._cond:
            self.closed = True
            self._resident = OrderedDict((i, r) for i, r in self._resident.items() if r.leases)
            self._cond.notify_all()


class ResidentRunner:
    """Stitch ``cfg_id`` of a :class:`Residency` as a plain runner (what the Selector holds)."""

    def __init__(self, residency: Residency, cfg_id: int) -> None:
        self.residency, self.cfg_id = residency, cfg_id

    def __call__(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return self.residency.run(self.cfg_id, x)
