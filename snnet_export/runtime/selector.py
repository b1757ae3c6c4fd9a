"""The runtime selector: run the most accurate stitch that meets the current throughput budget.

    from snnet_export.runtime import Selector

    sel = Selector("engines/deit-fp16")            # manifest + this device's measured profile
    sel.set_budget(min_throughput=400, batch=8)     # images/s at batch 8
    logits = sel(images)                            # NumPy float32 [batch, C, H, W] -> [batch, classes]
    out = sel.run_with_id(images)                   # (stitch id, logits) of one call, race-free
    sel.close()                                     # or: with Selector(...) as sel: ...

Candidates are the stitches on the Pareto frontier of (measured throughput, Top-1), tie groups as in
:func:`~..engine_folder.profile.pareto_front`; a stitch off the
frontier is never the best choice for any budget. Unknown accuracy falls back to FLOPs as the
proxy (with a warning). All frontier stitches stay resident, so a switch is a reference swap
(microseconds); with ONNX Runtime every session reads its weights from one memory map of the
shared weight file. With ``max_resident_mb`` the weights plus the resident sessions stay within a
budget: stitches load on first use and the least recently used are evicted (:mod:`.residency`).
Imports NumPy and the chosen runtime only: no torch, timm or click.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import SelectorError
from ..engine_folder.manifest import load_manifest
from ..engine_folder.profile import accuracy_of, find_profile, load_profiles, pareto_front, read_profile, tie_groups
from .adaptive import RETURN, LatencyTracker
from .residency import Residency

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A stitch the selector may run: measured speed at the profile's batches and its score."""

    id: int
    path: str
    accuracy: float  # Top-1 (%) or, when unknown, GFLOPs as the proxy
    throughput: dict[int, float]  # batch -> images/s
    latency_ms: dict[int, dict[str, float]]  # batch -> {p50, p90, p99, mean}


class Output(NamedTuple):
    """One call's result with the id of the stitch that produced it (:meth:`Selector.run_with_id`)."""

    stitch: int
    logits: np.ndarray[Any, Any]


def _check_budget(min_throughput: float | None, max_latency_ms: float | None, batch: int | None) -> None:
    """Refuse NaN, infinite or non-positive budgets (NaN would silently meet every comparison)."""
    for name, value in (("min_throughput", min_throughput), ("max_latency_ms", max_latency_ms)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise SelectorError(f"{name} must be a finite positive number, got {value!r}")
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise SelectorError(f"batch must be a positive integer, got {batch!r}")


def _closed(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    raise SelectorError("this Selector is closed: open a new one")


class Selector:
    """Switch between resident stitches of an engine folder by throughput budget.

    Args:
        folder: engine folder (``manifest.json`` + ``profile.<device>.json`` from ``bench``).
        backend: ``auto`` (TensorRT when this machine can run the folder's engines: TensorRT, a GPU, engines
            built by this TensorRT for this GPU from the current weights; else ORT, saying why), ``ort``, ``trt``.
        resident: ``frontier`` (default: the stitches the selector can pick), ``all``, or ``none``
            (choose only, load nothing: what ``snnet-export select`` does).
        profile: a profile file to use instead of this device's.
        hysteresis: relative margin a budget must clear before switching *up* to a slower, more
            accurate stitch; switching down happens as soon as the current stitch misses the budget.
        threads: ONNX Runtime intra-op threads per session (default: ORT's choice).
        target: TensorRT target name whose engines to load (``backend='trt'``).
        latency_stat: which latency percentile ``max_latency_ms`` budgets compare (``p50``/``p90``/``p99``).
        ort_mode: ``shared`` (stock graphs) or ``fused`` (attention fused into ORT's contrib op,
            weights still shared, about half the memory per session); default: the mode the profile
            was measured with (``bench``'s default is ``fused``; ``shared`` for a profile that names none).
        shared_threads: run every resident ONNX Runtime session on one process-wide pool of this many
            intra-op threads (ORT's global pool; avoids oversubscription with many stitches and caller
            threads, ``benchmarks/results/thread_pool.md``); set before any other ORT session; ``threads`` ignored.
        check_weights: before every call, compare the weight file's inode, size and mtime with those at load.
        adaptive: time every call; when the device is off its profile, correct the profile by its current
            speed, and return to the profile's choice once it recovers (:mod:`.adaptive`); off: a fixed choice.
        hold: under a load that slows the device, no up-switch until the loop returns (:mod:`.adaptive`,
            "hold"); off for a caller with its own hysteresis (the SLO server).
        clock: time source of the per-call timing (default ``time.perf_counter``; tests inject one).
        max_resident_mb: keep the weight file plus the resident sessions within this many MiB
            (ONNX Runtime): ``resident`` stitches are loaded at start as far as they fit (most
            accurate first), any other candidate on its first call, evicting the least recently
            used; held against the larger of that accounting and the process's measured RSS growth
            since the folder was opened (``docs/memory.md``); ``describe()['residency']`` reports
            both and the cold-switch cost (p50/p99). A budget below the
            weights plus the largest session raises :class:`MemoryBudgetError` (it says the minimum).
    """

    def __init__(self, folder: str | Path, backend: str = "auto", resident: str = "frontier",
                 profile: str | Path | None = None, hysteresis: float = 0.05, threads: int | None = None,
                 target: str | None = None, latency_stat: str = "p90", ort_mode: str | None = None,
                 shared_threads: int | None = None, check_weights: bool = True,
                 adaptive: bool = True, clock: Callable[[], float] = time.perf_counter,
                 max_resident_mb: float | None = None, hold: bool = True) -> None:
        self._rss0 = None  # with a budget: the RSS it counts growth from (onnxruntime set up, nothing opened)
        if max_resident_mb is not None and backend != "trt":
            from .loading import prepare_ort

            self._rss0 = prepare_ort(shared_threads)
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self._entries = {e["id"]: e for e in self.manifest["configs"]}
        self.target = target
        self.backend = self._resolve_backend(backend)
        self.profile = self._load_profile(profile)
        self.ort_mode = ort_mode or self.profile.get("ort_mode", "shared")
        if self.ort_mode not in ("shared", "fused"):
            raise SelectorError(f"ort_mode must be shared or fused (one copy of the weights), got '{self.ort_mode}'")
        self.hysteresis = float(hysteresis)
        self.latency_hysteresis: float | None = None  # the up-switch margin on max_latency_ms (None: hysteresis)
        self.latency_stat = latency_stat
        self.candidates = self._candidates()
        self.frontier = self._frontier()
        self.batch = min(self.profile["batches"])
        if resident not in ("frontier", "all", "none"):
            raise SelectorError(f"resident must be frontier, all or none, got '{resident}'")
        ids = {"all": list(self.candidates), "frontier": self.frontier, "none": []}[resident]
        self.shared_threads = shared_threads
        self.check_weights = check_weights
        self._closers: list[Callable[[], None]] = []
        self.residency: Residency | None = None
        self.max_resident_mb = max_resident_mb
        self._runners = self._load_runners(ids, threads) if ids or max_resident_mb else {}
        self._lock = threading.Lock()
        best = max(self.frontier, key=lambda i: self.candidates[i].accuracy)
        self._active: tuple[int, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] | None] = (best, self._runners.get(best))
        self.budget: dict[str, Any] = {}
        self._clock = clock
        lat = {(c.id, b): v for c in self.candidates.values() for b, v in c.latency_ms.items()}
        self.tracker = LatencyTracker({k: v["p50"] for k, v in lat.items()}, stat=latency_stat,
                                      tail_ms={k: v[latency_stat] for k, v in lat.items()}, hold=hold) if adaptive else None

    # ---- set-up ----
    def _resolve_backend(self, backend: str) -> str:
        if backend not in ("auto", "ort", "trt"):
            raise SelectorError(f"backend must be auto, ort or trt, got '{backend}'")
        if backend != "auto":
            return backend
        if not self.manifest.get("engines"):
            return "ort"
        from .trt import usable_trt_target

        target, why = usable_trt_target(self.manifest, self.target)
        if target is None:
            warnings.warn(f"backend 'auto': using ONNX Runtime, not the folder's TensorRT engines: {why}",
                          stacklevel=3)
            return "ort"
        self.target = target
        return "trt"

    def _load_profile(self, profile: str | Path | None) -> dict[str, Any]:
        if profile is not None:
            return read_profile(profile)
        device = None
        if self.backend == "trt":
            from .trt import this_gpu_device

            device = this_gpu_device()  # the name bench saved this GPU's profile under
        found = find_profile(self.folder, self.backend, device)
        if found is None:
            others = [p for p in load_profiles(self.folder) if p.get("backend") == self.backend]
            if not others:
                raise SelectorError(f"{self.folder} has no measured {self.backend} profile: run "
                                    f"`snnet-export bench {self.folder} --backend {self.backend}` on this device")
            found = others[0]
            warnings.warn(f"no {self.backend} profile measured on this device; using {found['_file']} "
                          f"(measured on {found.get('device')})", stacklevel=3)
        return found

    def _candidates(self) -> dict[int, Candidate]:
        entries = self._entries
        measured: dict[int, dict[int, dict[str, Any]]] = {}
        for rec in self.profile.get("stitches", []):
            if rec["id"] in entries:
                measured.setdefault(rec["id"], {})[rec["batch"]] = rec
        if not measured:
            raise SelectorError(f"the profile measures none of {self.folder}'s stitches: re-run bench")
        unknown = [i for i in measured if accuracy_of(entries[i]) is None]
        if unknown:
            warnings.warn(f"{len(unknown)} stitches have no known accuracy: using FLOPs as the accuracy "
                          "proxy (export with --accuracy results.jsonl to fix)", stacklevel=3)
        use_flops = bool(unknown)
        return {i: Candidate(
            id=i, path=entries[i]["path"],
            accuracy=entries[i]["flops"] / 1e9 if use_flops else float(accuracy_of(entries[i])),  # type: ignore[arg-type]
            throughput={b: float(r["throughput"]) for b, r in recs.items()},
            latency_ms={b: dict(r["latency_ms"]) for b, r in recs.items()},
        ) for i, recs in sorted(measured.items())}

    def _frontier(self) -> list[int]:
        batch = min(self.profile["batches"])
        pts = [(c.id, c.throughput.get(batch, 0.0), c.accuracy) for c in self.candidates.values()]
        return pareto_front(pts, tie_groups(self.profile, batch))

    def _load_runners(self, ids: list[int], threads: int | None) -> dict[int, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]]:
        if self.backend == "trt" and self.max_resident_mb is not None:
            raise SelectorError("max_resident_mb is implemented for ONNX Runtime sessions: use backend='ort'")
        if self.backend == "trt":
            from .trt.runner import load_engines

            engines = load_engines(self.folder, self.target or self.profile.get("target", "dgpu"), ids)
            self._closers = [e.close for e in engines.values()]
            return {i: e.run for i, e in engines.items()}
        from .loading import budgeted_runners, ort_runners

        opts = {"threads": threads, "fused": self.ort_mode == "fused", "shared_threads": self.shared_threads,
                "check_weights": self.check_weights}
        if self.max_resident_mb is None:
            return ort_runners(self.folder, self.manifest, ids, **opts)
        order = sorted(ids, key=lambda i: -self.candidates[i].accuracy)  # most accurate first
        runners, self.residency = budgeted_runners(self.folder, self.manifest, list(self.candidates), order,
                                                   self.max_resident_mb, rss_baseline=self._rss0, **opts)
        self._closers = [self.residency.close]
        return runners

    # ---- selection ----
    @property
    def current(self) -> int:
        """Id of the stitch that ``__call__`` runs now."""
        return self._active[0]

    @property
    def correction(self) -> float:
        """The factor the predicted latency is the profiled one times (1.0: as profiled, or not adaptive)."""
        return self.tracker.speed_factor if self.tracker is not None else 1.0

    def _factors(self, c: Candidate) -> tuple[float, float]:  # (speed, latency) factors of the closed loop
        return self.tracker.factors(c.id) if self.tracker is not None else (1.0, 1.0)

    def _speed(self, c: Candidate, batch: int) -> float:
        """Predicted images/s: profiled (at the nearest batch), divided by the speed factor."""
        return c.throughput[batch if batch in c.throughput else min(c.throughput, key=lambda b: abs(b - batch))] \
            / self._factors(c)[0]

    def _meets(self, c: Candidate, margin: float, lat_margin: float | None = None) -> bool:
        b = self.budget
        batch = b.get("batch", self.batch)
        if b.get("min_throughput") is not None and self._speed(c, batch) < b["min_throughput"] * margin:
            return False
        if b.get("max_latency_ms") is not None:
            lat = c.latency_ms.get(batch) or c.latency_ms[min(c.latency_ms, key=lambda x: abs(x - batch))]
            if lat[self.latency_stat] * self._factors(c)[1] * (margin if lat_margin is None else lat_margin) \
                    > b["max_latency_ms"]:
                return False
        return True

    def choose(self, returning: bool = False) -> int:
        """The stitch the budget calls for, with the closed loop's factors (:mod:`.adaptive`, "Factors").

        ``max`` keeps the first of equals in frontier order, slowest first. ``fits`` = frontier stitches
        meeting the budget at margin 1.0; none: the fastest (predicted). ``best`` = the most accurate of
        ``fits``. If the running stitch misses at 1.0 (or is off the frontier): in ``CORRECTED`` the most
        accurate stitch meeting margin ``1 + hysteresis`` if any (straight to the stitch predicted to fit),
        else ``best``. If ``best`` is not more accurate than the running one: ``best``. Else an up-switch:
        in ``CORRECTED`` (not on a return) never on ``hold``, and only once the running stitch has ``run >= W``
        (``dwelt``); to the most accurate of ``fits`` more accurate than the running one that meets margin
        ``1 + hysteresis`` (on a latency budget ``1 + latency_hysteresis`` when set; 1.0 on a ``RETURN``), else stay.
        """
        front = [self.candidates[i] for i in self.frontier]
        fits = [c for c in front if self._meets(c, 1.0)]
        if not fits:
            batch = self.budget.get("batch", self.batch)
            fastest = max(front, key=lambda c: self._speed(c, batch))
            warnings.warn(f"no stitch meets the budget {self.budget}; running the fastest, "
                          f"{fastest.id} ({fastest.path})", stacklevel=3)
            return fastest.id
        best = max(fits, key=lambda c: c.accuracy)
        cur, up = self.candidates.get(self.current), 1.0 if returning else 1.0 + self.hysteresis
        lup = up if returning or self.latency_hysteresis is None else 1.0 + self.latency_hysteresis
        if cur is None or cur.id not in self.frontier or not self._meets(cur, 1.0):  # misses: switch down now
            safe = [c for c in fits if self._meets(c, up, lup)] if self.tracker is not None and self.tracker.corrected else []
            return max(safe, key=lambda c: c.accuracy).id if safe else best.id
        if best.accuracy <= cur.accuracy:
            return best.id
        tr = self.tracker
        if not returning and tr is not None and tr.corrected and (tr.hold or not tr.dwelt):
            return cur.id  # CORRECTED: up-switches wait for the return on hold, else for a full window
        ups = [c for c in fits if c.accuracy > cur.accuracy and self._meets(c, up, lup)]  # up: clear the margin
        return max(ups, key=lambda c: c.accuracy).id if ups else cur.id

    def set_budget(self, min_throughput: float | None = None, batch: int | None = None,
                   max_latency_ms: float | None = None) -> int:
        """Set the budget and switch to the stitch it calls for; returns that stitch's id.

        Args:
            min_throughput: images/s the app needs at ``batch``.
            batch: the batch size the app runs (default: the smallest profiled batch).
            max_latency_ms: per-call latency limit at ``batch`` (compared with ``latency_stat``).
        """
        if min_throughput is None and max_latency_ms is None:
            raise SelectorError("set_budget needs min_throughput or max_latency_ms")
        _check_budget(min_throughput, max_latency_ms, batch)
        with self._lock:
            self.budget = {"min_throughput": min_throughput, "max_latency_ms": max_latency_ms,
                           "batch": int(batch) if batch else self.batch}
            if self.tracker is not None:
                self.tracker.clear_home()  # a new budget: the stitch to return to is chosen afresh
            return self._switch()

    def _switch(self, req: int = 0) -> int:
        """Activate what ``choose`` calls for (the caller holds ``_lock``); ``req``: the loop's request."""
        cur = self.candidates.get(self.current)
        if req and self.tracker is not None and cur is not None and not self._meets(cur, 1.0):
            self.tracker.penalise(cur.id)  # left because it is slow now: not retried before a return
        home = self.tracker.return_to if req == RETURN and self.tracker is not None else None
        chosen = home if home is not None and home in self.frontier else self.choose(returning=req == RETURN)
        if chosen != self._active[0]:
            self._active = (chosen, self._runners.get(chosen))
            log.info("switched to stitch %d, correction %.2f", chosen, self.correction)
        return chosen

    def observe(self, stitch: int, batch: int, seconds: float) -> None:
        """Record a served call's latency; re-choose, without waiting, if the loop asks (a request
        made while another thread switches stays pending in the tracker for a later call)."""
        tr = self.tracker
        if tr is not None and (tr.record(stitch, batch, seconds) or tr.pending) and self.budget:
            if self._lock.acquire(blocking=False):  # another thread is re-choosing: do not wait
                try:
                    req = tr.take_request()
                    if req:
                        self._switch(req)
                finally:
                    self._lock.release()

    def run(self, x: np.ndarray[Any, Any], stitch: int | None = None) -> np.ndarray[Any, Any]:
        """Run ``x`` on the active stitch (or on resident ``stitch``)."""
        if stitch is not None:
            return self._runners[stitch](x)
        return self._serve(x)[1]

    __call__ = run

    def _serve(self, x: np.ndarray[Any, Any]) -> tuple[int, np.ndarray[Any, Any]]:
        """Run ``x`` on the active stitch, timing the call when adaptive; ``(stitch id, logits)``."""
        cfg_id, runner = self._active  # one atomic read: a concurrent switch never tears a call
        if runner is None:
            raise SelectorError(f"stitch {cfg_id} is not resident (open the Selector with resident='frontier')")
        if self.tracker is None:
            return cfg_id, runner(x)
        t0 = self._clock()
        y = runner(x)
        self.observe(cfg_id, len(x), self._clock() - t0)
        return cfg_id, y

    def run_with_id(self, x: np.ndarray[Any, Any]) -> Output:
        """Run ``x`` on the active stitch; returns ``Output(stitch, logits)``. The id is the stitch that ran
        this call (read in one atomic step with its runner), right even while other threads change the budget."""
        return Output(*self._serve(x))

    def close(self) -> None:
        """Release every session or engine; later calls raise :class:`SelectorError`. Idempotent."""
        with self._lock:
            self._active = (self._active[0], _closed)
            self._runners = {i: _closed for i in self._runners}
            closers, self._closers = self._closers, []
        for close in closers:
            close()

    def __enter__(self) -> "Selector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def resident(self) -> list[int]:
        """Ids of the loaded stitches (with a budget: those resident now)."""
        return sorted(self.residency.resident() if self.residency is not None else self._runners)

    def describe(self, stitch: int | None = None) -> dict[str, Any]:
        """Id, path, accuracy, measured speed of ``stitch`` (default: active); adaptive: predicted vs observed."""
        c = self.candidates[self.current if stitch is None else stitch]
        out = {"id": c.id, "path": c.path, "accuracy": c.accuracy, "throughput": c.throughput,
               "latency_ms": c.latency_ms, "on_frontier": c.id in self.frontier}
        if self.tracker is not None:
            out["adaptive"] = self.tracker.describe(c.id, self.budget.get("batch", self.batch))
        if self.residency is not None:
            out["residency"] = self.residency.describe()
        return out
