"""Sampling until resolved (bench.sampling) and the tie rule (bench.ties), on synthetic latencies.

The runners' latencies come from a seeded log-normal per stitch (through a replaced
``time_interleaved``), so the true order and the true ties are known; the real timing path is
covered by tests/test_bench.py.
"""
from __future__ import annotations

import math
import numpy as np
import pytest

from snnet_export.bench import timing
from snnet_export.bench.sampling import sample_until_resolved
from snnet_export.bench.ties import half_width, judge, relation


def m(p50, lo, hi):
    return {"p50": p50, "ci": [lo, hi]}


def test_relations():
    assert relation(m(10, 9.9, 10.1), m(11, 10.9, 11.1), 0.04) == "separated"
    assert relation(m(10, 9.8, 10.2), m(10.1, 9.9, 10.3), 0.04) == "tied"  # both half-widths 2 %
    assert relation(m(10, 9.0, 11.0), m(10.1, 9.9, 10.3), 0.04) == "open"  # one half-width 10 %
    # disjoint CIs, but the medians 2 % apart (< the 4 % tie width): run-to-run drift could reverse it
    assert relation(m(10, 9.95, 10.05), m(10.2, 10.15, 10.25), 0.04) == "tied"
    assert relation(m(10.2, 10.15, 10.25), m(10, 9.95, 10.05), 0.04) == "tied"
    assert relation(m(10, 9.95, 10.05), m(10.41, 10.36, 10.46), 0.04) == "separated"  # 4.1 % apart
    assert half_width(10, [9.0, 11.0]) == pytest.approx(0.1)


def test_judge_groups_share_a_common_latency():
    """A~B and B~C tied, but A and C disjoint: groups [A, B] and [C], not one chain."""
    meas = {1: m(10.0, 9.8, 10.2), 2: m(10.25, 10.05, 10.45), 3: m(10.5, 10.3, 10.7), 4: m(20.0, 19.9, 20.1)}
    flops = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    got = judge(meas, flops, target=0.02)
    assert [got[i]["tie_group"] for i in (1, 2, 3, 4)] == [[1, 2], [1, 2], [3], [4]]
    assert all(v["resolved"] and v["settled"] for v in got.values())


def test_judge_open_pair_is_unresolved_and_unsettled_until_precise():
    meas = {1: m(10.0, 8.0, 12.0), 2: m(10.5, 10.4, 10.6)}
    got = judge(meas, {1: 1.0, 2: 2.0}, target=0.02)
    assert not got[1]["resolved"] and not got[1]["settled"]  # 20 % half-width, overlapping its neighbour
    assert not got[2]["resolved"] and got[2]["settled"]  # precise itself (1 %): stops, its neighbour goes on
    assert got[1]["tie_group"] == [1] and got[2]["tie_group"] == [2]


class _Runner:
    """A stitch whose latency the fake ``time_interleaved`` draws from ``ms`` (never called itself)."""

    def __init__(self, ms):
        self.ms = ms

    def __call__(self, x):
        raise AssertionError("the synthetic runner is not run")


_runner = _Runner


@pytest.fixture
def synthetic(monkeypatch):
    """time_interleaved returns log-normal latencies (sigma 0.2) around each runner's ``ms``."""
    rng = np.random.default_rng(0)
    calls = {"runs": 0}

    def fake(fns, warmup=3, runs=20, min_seconds=1.0, max_runs=1000):
        out = {}
        for name, fn in fns.items():
            out[name] = list(rng.lognormal(math.log(fn.func.ms / 1e3), 0.2, runs))
            calls["runs"] += runs
        return out

    monkeypatch.setattr(timing, "time_interleaved", fake)
    return calls


def _manifest(ids):
    return {"input_shape": [3, 4, 4], "configs": [{"id": i, "flops": 1e6 * (i + 1)} for i in ids]}


def test_samples_until_every_stitch_is_settled(synthetic):
    # 0 and 1 run equally fast (a true tie); 2 is 30 % slower; 3 and 4 differ by 1 % (hard to separate)
    speeds = {0: 1.0, 1: 1.0, 2: 1.3, 3: 2.0, 4: 2.02}
    runners = {i: _runner(ms) for i, ms in speeds.items()}
    recs, base, summary = sample_until_resolved("ort", runners, _manifest(speeds), [1], None, (0, 10, 0.0, 2),
                                                False, (0.02, None, 5000))
    assert summary["stopped"] == "all settled" and summary["extra_rounds"] > 0 and base == []
    by = {r["id"]: r for r in recs}
    assert all(r["resolved"] or half_width(r["latency_ms"]["p50"], r["latency_ms"]["p50_ci"]) <= 0.02
               for r in recs)
    assert by[0]["tie_group"] == [0, 1] == by[1]["tie_group"]  # equal speeds end tied
    assert by[2]["tie_group"] == [2]  # 30 % apart: separated from both neighbours
    assert by[3]["runs"] > 10  # sampled beyond the first pass
    assert by[0]["latency_ms"]["p50_ci"] == by[0]["latency_ms"]["ci95"]


def test_time_budget_and_first_pass_only(synthetic):
    runners = {i: _runner(1.0 + 0.01 * i) for i in range(4)}
    _, _, summary = sample_until_resolved("ort", runners, _manifest(runners), [1], None, (0, 4, 0.0, 2), False,
                                          (0.02, 0.0, 5000))
    assert summary["stopped"] == "time budget" and summary["extra_rounds"] == 0 and summary["unsettled"] > 0
    recs, _, summary = sample_until_resolved("ort", runners, _manifest(runners), [1], None, (0, 4, 0.0, 2), False,
                                             (None, None, 5000))
    assert "stopped" not in summary and all(r["runs"] == 4 for r in recs) and all("tie_group" in r for r in recs)


def test_max_runs_caps_a_stitch_that_cannot_settle(synthetic):
    runners = {0: _runner(1.0), 1: _runner(1.005)}  # 0.5 % apart, sigma 20 %: needs thousands of runs
    recs, _, summary = sample_until_resolved("ort", runners, _manifest(runners), [1], None, (0, 4, 0.0, 2), False,
                                             (0.001, None, 60))
    assert summary["stopped"] == "max runs" and all(r["runs"] <= 60 + 2 for r in recs)


def test_visit_runs_asks_for_what_the_ci_still_needs():
    from snnet_export.bench.sampling import visit_runs

    # half-width 6 %, goal the tie width 4 %: 20 * 1.5^2 = 45 runs in all, 25 more
    assert visit_runs(20, 1.0, [0.94, 1.06], 0.02, 2, 1000) == 20  # ... but at most doubling
    assert visit_runs(40, 1.0, [0.95, 1.05], 0.02, 2, 1000) == 23  # half-width 5 %: 40 * 1.25^2 = 62.5 in all
    # half-width 3 %: under the tie width, so the goal is the target 2 %: 40 * 2.25 - 40 = 50, capped at 40
    assert visit_runs(40, 1.0, [0.97, 1.03], 0.02, 2, 1000) == 40
    assert visit_runs(100, 1.0, [0.99, 1.01], 0.02, 3, 1000) == 3  # within the target: per_round
    assert visit_runs(40, 100.0, [94.0, 106.0], 0.02, 2, 1000) == 2  # 0.25 s of 100-ms runs: per_round
    assert visit_runs(40, 1.0, [0.94, 1.06], 0.02, 2, 45) == 5  # never beyond max_runs
