"""Spread of a measurement: confidence interval of the median, rank agreement, machine state.

``median_ci`` is distribution-free (order statistics of the binomial(n, 1/2) count below the
median), so it holds for the skewed, heavy-tailed latencies of a shared machine without assuming
a normal distribution or resampling. Imports NumPy only.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: a stitch whose 95 % CI of the median latency is wider than this (relative to the median) is
#: "noisy": differences smaller than that cannot be ranked
MAX_REL_CI = 0.10


def median_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """``(low, high)``: a ``level`` confidence interval of the median of ``values``.

    The interval is ``(x_(j), x_(k))`` of the sorted sample, with ``j, k`` the smallest symmetric
    pair of order statistics for which ``P(j <= B < k) >= level``, ``B ~ Binomial(n, 1/2)``. With too
    few values for that coverage (n < 6 at 95 %) it is the whole range.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        raise ValueError("median_ci of an empty sample")
    alpha = (1.0 - level) / 2.0
    if n > 500:  # normal approximation of the binomial (exact sums overflow; error < 1 rank)
        z = math.sqrt(2.0) * _erfinv(1.0 - 2.0 * alpha)
        j = max(0, int(math.floor(n / 2.0 - z * math.sqrt(n) / 2.0)) - 1)
        return float(x[j]), float(x[n - 1 - j])
    cdf = np.cumsum([math.comb(n, i) for i in range(n + 1)], dtype=np.float64) / 2.0 ** n
    below = np.nonzero(cdf <= alpha)[0]
    if below.size == 0:
        return float(x[0]), float(x[-1])
    j = int(below[-1])  # P(B <= j) <= alpha: x_(j) (0-based) lies above the median with prob <= alpha
    return float(x[j]), float(x[n - 1 - j])


def _erfinv(y: float) -> float:
    """Inverse error function by Newton steps on ``math.erf`` (no SciPy)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def rel_width(p50: float, ci: Sequence[float]) -> float:
    """Width of ``ci`` relative to ``p50`` (0.1 = the interval spans 10 % of the median)."""
    return float((ci[1] - ci[0]) / p50) if p50 > 0 else float("inf")


def overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two intervals ``(low, high)`` overlap (their medians are not resolved)."""
    return a[0] <= b[1] and b[0] <= a[1]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two paired samples (average ranks for ties)."""
    def ranks(v: Sequence[float]) -> np.ndarray:
        arr = np.asarray(v, dtype=np.float64)
        order = arr.argsort(kind="mergesort")
        r = np.empty(arr.size)
        r[order] = np.arange(arr.size, dtype=np.float64)
        for val in np.unique(arr):  # ties share their mean rank
            idx = arr == val
            r[idx] = r[idx].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.size < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def cpu_mhz() -> dict[str, Any] | None:
    """Current CPU clock where readable: ``{"min", "max", "mean"}`` MHz over cores, else ``None``.

    Reads ``scaling_cur_freq`` (cpufreq) or, failing that, ``/proc/cpuinfo`` (which a VM may
    report as a constant nominal clock).
    """
    vals: list[float] = []
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            vals.append(int(path.read_text()) / 1e3)
        except (OSError, ValueError):
            pass
    source = "cpufreq"
    if not vals:
        source = "/proc/cpuinfo"
        try:
            vals = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.lower().startswith("cpu mhz")]
        except (OSError, ValueError, IndexError):
            vals = []
    if not vals:
        return None
    return {"min": round(min(vals)), "max": round(max(vals)), "mean": round(sum(vals) / len(vals)),
            "source": source}


def machine_state() -> dict[str, Any]:
    """Load average (1, 5, 15 min) and CPU clock now."""
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"load_average": load, "cpu_mhz": cpu_mhz()}
