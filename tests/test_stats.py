"""The spread statistics ``bench`` records: CI of the median, rank agreement, machine state."""
from __future__ import annotations

import numpy as np
import pytest

from snnet_export.bench.stats import machine_state, median_ci, overlap, rel_width, spearman


@pytest.mark.parametrize("n", [8, 20, 60, 700])
def test_median_ci_covers_the_true_median_about_95_percent(n):
    rng = np.random.default_rng(n)
    true = np.log(2.0)  # median of Exponential(1): skewed like latencies
    hits = sum(lo <= true <= hi for lo, hi in (median_ci(rng.exponential(size=n)) for _ in range(600)))
    assert 0.92 <= hits / 600 <= 0.995


def test_median_ci_is_order_statistics_and_narrows():
    x = np.arange(1.0, 101.0)
    lo, hi = median_ci(x)
    assert (lo, hi) == (40.0, 61.0)  # ranks 40 and 61: the textbook 95 % pair for n = 100 (coverage 96.5 %)
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few values: the whole range
    w = [rel_width(np.median(s), median_ci(s)) for s in (x[::10], x)]
    assert w[1] < w[0]
    with pytest.raises(ValueError):
        median_ci([])


def test_spearman_and_overlap():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert overlap((1, 2), (2, 3)) and not overlap((1, 2), (2.1, 3))


def test_machine_state_reads_load():
    state = machine_state()
    assert len(state["load_average"]) == 3 and all(v >= 0 for v in state["load_average"])
    assert state["cpu_mhz"] is None or state["cpu_mhz"]["max"] >= state["cpu_mhz"]["min"] > 0
