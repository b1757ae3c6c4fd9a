"""Timing primitives both :mod:`.measure` and :mod:`.sampling` use: interleaved timing, per-run stats.

``time_interleaved`` times several callables round-robin; ``latency_stats`` turns one stitch-batch's
per-run latencies into the profile record's fields. Callers look them up on this module at call
time (``timing.time_interleaved(...)``), so a test replaces them in one place. Imports NumPy only.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .stats import median_ci, rel_width


def latency_stats(seconds: Sequence[float], batch: int) -> dict[str, Any]:
    """Profile record fields from per-run latencies (seconds) of one batch size.

    ``latency_ms.ci95`` is the 95 % confidence interval of the median (:func:`.stats.median_ci`),
    ``throughput_ci95`` the matching throughput interval, ``rel_ci`` its width over the median.
    """
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    lo, hi = median_ci(ms)
    return {"batch": batch, "throughput": round(batch * 1e3 / p50, 3),
            "throughput_ci95": [round(batch * 1e3 / hi, 3), round(batch * 1e3 / lo, 3)],
            "latency_ms": {"mean": round(float(ms.mean()), 4), "p50": round(p50, 4),
                           "p90": round(p90, 4), "p99": round(p99, 4), "min": round(float(ms.min()), 4),
                           "ci95": [round(lo, 4), round(hi, 4)]},
            "rel_ci": round(rel_width(p50, (lo, hi)), 4), "runs": int(ms.size)}


def time_interleaved(fns: Mapping[str, Callable[[], Any]], warmup: int = 3, runs: int = 20,
                     min_seconds: float = 1.0, max_runs: int = 1000) -> dict[str, list[float]]:
    """Time several callables round-robin: a few runs of each in turn until all are done.

    Each callable gets ``warmup`` untimed runs, then timed runs until it has at least ``runs`` of
    them and ``min_seconds`` of timed work (at most ``max_runs``). Interleaving in short rounds
    makes the ratio of two callables fair on a machine whose load changes while it is measured.

    Returns:
        ``{name: [latency in seconds, ...]}``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    lat: dict[str, list[float]] = {k: [] for k in fns}
    chunk = max(1, math.ceil(runs / 10))
    todo = set(fns)
    while todo:
        for name in [k for k in fns if k in todo]:
            for _ in range(chunk):
                t0 = time.perf_counter()
                fns[name]()
                lat[name].append(time.perf_counter() - t0)
            done = len(lat[name]) >= runs and sum(lat[name]) >= min_seconds
            if done or len(lat[name]) >= max_runs:
                todo.discard(name)
    return lat
