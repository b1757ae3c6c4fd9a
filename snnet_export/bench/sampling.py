"""Sample until the ranking is known: interleaved rounds, then more rounds for the unsettled stitches only.

``sample_until_resolved`` times every stitch at every batch in two phases:

1. **First pass**: ``rounds`` interleaved rounds over all stitches and batches (each round starts
   at another stitch), ``warmup`` untimed runs at the first visit and one at each later visit,
   until each has ``runs`` timed runs and ``min_seconds`` of timed work. Drift while this runs
   hits all stitches alike. The PyTorch baseline, when asked for, is timed here, interleaved.
2. **Until resolved**: while some stitch-batch is not *settled* (:mod:`.ties`: its 95 % CI
   half-width of the median is above ``target``, and some FLOPs neighbour is neither separated
   from it nor tied with it), another round visits every unsettled one, in a rotated order, for
   the runs its CI still needs (:func:`visit_runs`: about ``n * (h / goal) ** 2`` in all, at least
   ``ceil(runs / rounds)``, at most doubling, at most :data:`VISIT_SECONDS`; one untimed run
   first). It stops when every one is settled, when ``time_budget`` seconds (counted from the
   start of the first pass) are spent, or for a stitch-batch when it reaches ``max_runs`` runs. This is the calibrate-and-repeat idea
   of pyperf and criterion, with the CI of the median as the stopping statistic.

Timing goes through :mod:`.timing`, looked up at call time (tests replace ``timing.time_interleaved``).
Imports NumPy only (and the runners it is given).
"""
from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import timing as _timing  # looked up at call time (tests replace bench.timing.time_interleaved)
from .stats import median_ci
from .ties import DEFAULT_TARGET, annotate, half_width, judge

log = logging.getLogger(__name__)
#: timed work one phase-2 visit of a stitch-batch may take at most (seconds)
VISIT_SECONDS = 0.25
Runner = Callable[[np.ndarray], Any]


def sample_until_resolved(backend: str, runners: Mapping[int, Runner], manifest: Mapping[str, Any],
                          batches: Sequence[int], torch_run: Callable[[int], Runner] | None,
                          timing: tuple[int, int, float, int], progress: bool,
                          policy: tuple[float | None, float | None, int] = (DEFAULT_TARGET, None, 1000),
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Time every stitch at every batch (first pass, then until resolved).

    Args:
        timing: ``(warmup, runs, min_seconds, rounds)`` of the first pass.
        policy: ``(target, time_budget, max_runs)``: CI half-width target (``None``: first pass
            only), seconds for the whole measurement (``None``: no limit), runs cap per stitch-batch.

    Returns:
        ``(records, baseline records, summary)``; records carry ``p50_ci``, ``resolved`` and
        ``tie_group``; the summary says how sampling ended.
    """
    t0 = time.perf_counter()
    lat, base = _first_pass(backend, runners, manifest, batches, torch_run, timing, progress)
    target, budget, max_runs = policy
    flops = {e["id"]: float(e.get("flops") or 0.0) for e in manifest["configs"]}
    summary: dict[str, Any] = {"ci_target": target, "time_budget": budget, "max_runs": max_runs,
                               "first_pass_seconds": round(time.perf_counter() - t0, 1), "extra_rounds": 0}
    if target is not None:
        summary.update(_until_resolved(backend, runners, manifest, batches, lat, flops, timing,
                                       (target, budget, max_runs), t0))
    records = [{"id": i, **_timing.latency_stats(lat[i, b], b)} for i in runners for b in batches]
    for r in records:
        r["latency_ms"]["p50_ci"] = list(r["latency_ms"]["ci95"])
    annotate(records, flops, target if target is not None else DEFAULT_TARGET)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return records, base, summary


def _first_pass(backend: str, runners: Mapping[int, Runner], manifest: Mapping[str, Any], batches: Sequence[int],
                torch_run: Callable[[int], Runner] | None, timing: tuple[int, int, float, int],
                progress: bool) -> tuple[dict[tuple[int, int], list[float]], list[dict[str, Any]]]:
    """Phase 1: ``rounds`` interleaved rounds over all stitches and batches (PyTorch interleaved too)."""
    from ..progress import progress_bar

    warmup, runs, min_seconds, rounds = timing
    rounds = max(1, int(rounds))
    inputs = _inputs(manifest, batches)
    ids = list(runners)
    torch_runs = {i: torch_run(i) for i in ids} if torch_run is not None else {}
    lat: dict[tuple[str, int, int], list[float]] = {}
    per_round = max(1, math.ceil(runs / rounds))
    bar = progress_bar(None, desc=f"bench {backend}", unit="stitch", disable=not progress, total=rounds * len(ids))
    for r in range(rounds):
        shift = (r * len(ids)) // rounds  # each round starts at another stitch
        for cfg_id in ids[shift:] + ids[:shift]:
            for batch, x in inputs.items():
                fns: dict[str, Callable[[], Any]] = {backend: partial(runners[cfg_id], x)}
                if torch_run is not None:
                    fns["torch"] = partial(torch_runs[cfg_id], x)
                got = _timing.time_interleaved(fns, warmup if r == 0 else min(1, warmup), per_round,
                                                min_seconds / rounds)
                for name, values in got.items():
                    lat.setdefault((name, cfg_id, batch), []).extend(values)
            bar.update(1)
        bar.set_postfix_str(f"round {r + 1}/{rounds}")
    bar.close()
    base = [{"id": i, **_timing.latency_stats(lat["torch", i, b], b)} for i in ids for b in batches] \
        if torch_runs else []
    return {(i, b): lat[backend, i, b] for i in ids for b in batches}, base


def _inputs(manifest: Mapping[str, Any], batches: Sequence[int]) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {b: rng.standard_normal((b, *manifest["input_shape"])).astype(np.float32) for b in batches}


def _unsettled(lat: Mapping[tuple[int, int], list[float]], batches: Sequence[int], flops: Mapping[int, float],
               target: float, max_runs: int, cache: dict[tuple[int, int], tuple[int, dict[str, Any]]] | None = None,
               ) -> list[tuple[int, int]]:
    """Stitch-batches still to sample: not settled and under ``max_runs``, in (batch, id) order.

    ``cache`` keeps each stitch-batch's median and CI until it gets more runs.
    """
    cache = {} if cache is None else cache
    out = []
    for b in batches:
        meas = {}
        for (i, bb), v in lat.items():
            if bb != b:
                continue
            hit = cache.get((i, bb))
            if hit is None or hit[0] != len(v):
                ms = np.asarray(v) * 1e3
                hit = cache[i, bb] = (len(v), {"p50": float(np.percentile(ms, 50)), "ci": list(median_ci(ms.tolist()))})
            meas[i] = hit[1]
        out += [(i, b) for i, verdict in sorted(judge(meas, flops, target).items())
                if not verdict["settled"] and len(lat[i, b]) < max_runs]
    return out


def visit_runs(n: int, p50: float, ci: Sequence[float], target: float, per_round: int, max_runs: int,
               max_seconds: float = VISIT_SECONDS) -> int:
    """Timed runs for one phase-2 visit of a stitch-batch with ``n`` runs, median ``p50`` (ms) and CI ``ci``.

    The CI of the median narrows as ``1 / sqrt(n)``, so reaching half-width ``goal`` takes about
    ``n * (h / goal) ** 2`` runs in all; ``goal`` is the tie width ``2 * target`` (where a
    neighbour pair is decided, tied or separated) while ``h`` is above it, then ``target``. A visit
    takes what is missing, but at least ``per_round``, at most ``n`` (a stitch at most doubles its
    runs per round, so it stays interleaved with the others over several rounds), at most
    ``max_seconds`` of timed work, and never beyond ``max_runs``.
    """
    h = half_width(p50, ci)
    goal = 2.0 * target if h > 2.0 * target else target
    need = math.ceil(n * (h / goal) ** 2) - n if h > goal else per_round
    runs = min(max(per_round, need), max(per_round, n))
    if p50 > 0:
        runs = min(runs, max(per_round, int(max_seconds * 1e3 / p50)))
    return max(1, min(runs, max_runs - n))


def _until_resolved(backend: str, runners: Mapping[int, Runner], manifest: Mapping[str, Any], batches: Sequence[int],
                    lat: dict[tuple[int, int], list[float]], flops: Mapping[int, float],
                    timing: tuple[int, int, float, int], policy: tuple[float, float | None, int],
                    t0: float) -> dict[str, Any]:
    """Phase 2: rounds over the unsettled stitch-batches until none is left or the budget is spent."""
    warmup, runs, _, rounds = timing
    target, budget, max_runs = policy
    per_round = max(2, math.ceil(runs / max(1, rounds)))
    inputs = _inputs(manifest, batches)
    extra, stop = 0, "all settled"
    cache: dict[tuple[int, int], tuple[int, dict[str, Any]]] = {}
    while True:
        todo = _unsettled(lat, batches, flops, target, max_runs, cache)
        if not todo:
            break
        if budget is not None and time.perf_counter() - t0 >= budget:
            stop = "time budget"
            break
        shift = extra % len(todo)
        log.debug("sampling round %d: %d stitch-batches unsettled", extra + 1, len(todo))
        for cfg_id, batch in todo[shift:] + todo[:shift]:
            if budget is not None and time.perf_counter() - t0 >= budget:
                break
            n, meas = cache[cfg_id, batch]
            got = _timing.time_interleaved({backend: partial(runners[cfg_id], inputs[batch])}, min(1, warmup),
                                            visit_runs(n, meas["p50"], meas["ci"], target, per_round, max_runs), 0.0)
            lat[cfg_id, batch].extend(got[backend])
        extra += 1
    left = _unsettled(lat, batches, flops, target, 1 << 62, cache)
    capped = [k for k in left if len(lat[k]) >= max_runs]
    if stop == "all settled" and capped:
        stop = "max runs"
    return {"extra_rounds": extra, "stopped": stop, "unsettled": len(left)}
