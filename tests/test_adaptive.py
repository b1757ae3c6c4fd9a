"""The closed-loop selector: correction estimate, switching under a simulated slowdown, threads.

The stitches are real tiny ONNX Runtime sessions; only the clock is simulated, so a call "takes"
``factor x`` its profiled median and the device's slowdown is under the test's control.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from engine_folder import write_profile

from snnet_export.runtime import Selector
from snnet_export.runtime.adaptive import LatencyTracker


X = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from snnet_export.engine_folder.manifest import save_manifest
    from snnet_export.export.stitches import export_stitches

    out = tmp_path_factory.mktemp("adaptive") / "tiny"
    m = export_stitches("tiny", "random", out, configs="0,1,2,10,50,70", progress=False)
    top = max(e["flops"] for e in m["configs"])
    for e in m["configs"]:
        e["accuracy"] = {"acc1": 50 + 40 * e["flops"] / top, "acc5": None}
    save_manifest(out, m)
    _write_profile(out, {e["id"]: 1e9 / e["flops"] for e in m["configs"]})
    return out


def _write_profile(folder, speed):
    """Batch-1 profile with latency 1000 / speed ms at every percentile (the simulation has no spread)."""
    write_profile(folder, speed, tails=(1.0, 1.0))


class SimClock:
    """Each ``run`` reads the clock twice; the second read advances it by factor x profiled p50."""

    def __init__(self) -> None:
        self.t, self.factor, self.sel, self._second = 0.0, 1.0, None, False

    def __call__(self) -> float:
        if self._second:
            c = self.sel.candidates[self.sel.current]
            self.t += self.factor * c.latency_ms[1]["p50"] / 1e3
        self._second = not self._second
        return self.t


def _phase(sel, clock, factor, calls=60):
    """Serve ``calls`` calls at ``factor``; the stitch and its simulated latency of each call."""
    clock.factor = factor
    served = []
    for _ in range(calls):
        cfg = sel.current
        sel(X)
        served.append((cfg, factor * sel.candidates[cfg].latency_ms[1]["p50"]))
    return served


def _best_within(sel, budget, factor):
    ok = [i for i in sel.frontier if sel.candidates[i].latency_ms[1]["p90"] * factor <= budget]
    return max(ok, key=lambda i: sel.candidates[i].accuracy)


def test_tracker_follows_a_step_and_ignores_an_outlier():
    tr = LatencyTracker({(0, 1): 10.0, (1, 1): 20.0}, window=15, check_every=3)
    for _ in range(30):
        tr.record(0, 1, 0.010)
    assert tr.correction == pytest.approx(1.0)
    tr.record(1, 1, 0.5)  # one 25x outlier (a cold call)
    tr.record(0, 1, 0.010), tr.record(0, 1, 0.010)
    assert tr.correction == pytest.approx(1.0)
    asked = [tr.record(1, 1, 0.040) for _ in range(12)]  # every stitch now 2x slower
    assert tr.correction == pytest.approx(2.0) and any(asked)
    assert tr.predicted_ms(0, 4) == pytest.approx(10.0 * 4 * 2.0)  # other batch: scaled, then corrected
    assert tr.observed(1)["p50_ms_per_image"] == pytest.approx(40.0)
    assert tr.observed(2) is None


def test_tracker_tail_follows_slow_calls_and_skips_the_first_call_after_a_switch():
    tr = LatencyTracker({(0, 1): 10.0, (1, 1): 10.0}, window=20, check_every=1, min_samples=10)
    for _ in range(9):
        tr.record(0, 1, 0.010)
    assert tr.tails is None  # 8 samples (the first call is a warm-up): too few for a tail
    tr.record(1, 1, 1.0)  # first call of stitch 1 after a switch: 100x, not a sample
    assert max(r for r, _ in tr._window) == pytest.approx(1.0)
    for k in range(40):  # every 10th call 4x slower: the median stays, the p99 tail says 4x
        tr.record(1, 1, 0.040 if k % 10 == 0 else 0.010)
    assert tr.correction == pytest.approx(1.0)
    assert tr.tail("p99") == pytest.approx(4.0) and tr.tail("p90") == pytest.approx(1.0)


def test_selector_budgets_the_observed_tail(folder):
    clock = SimClock()
    sel = Selector(folder, clock=clock, latency_stat="p99")
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p50"] for i in sel.frontier}
    budget = sorted(lat.values())[-2] * 1.2
    first = sel.set_budget(max_latency_ms=budget, batch=1)
    factors = iter([3.0 if k % 10 == 0 else 1.0 for k in range(400)])  # every 10th call 3x slower
    for _ in range(400):
        clock.factor = next(factors)
        sel(X)
    # the median says "as profiled", the tail says a p99 call takes 3x: a faster stitch holds the p99 budget
    assert sel.correction == pytest.approx(1.0) and sel.tracker.tail("p99") == pytest.approx(3.0)
    assert sel.current == _best_within(sel, budget, 3.0) != first


def test_tracker_memory_is_bounded():
    tr = LatencyTracker({(i, 1): 1.0 for i in range(3)}, window=15, history=64)
    for k in range(20_000):
        tr.record((k // 4) % 3, 1, 0.001)  # runs of 4 calls per stitch (a first call is a warm-up)
    assert len(tr._window) == 15 and all(len(d) == 64 for d in tr._seen.values())
    assert tr.calls == 20_000


def test_adaptive_switches_down_under_slowdown_and_back_up(folder):
    clock = SimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.05)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    budget = sorted(lat.values())[-2] * 1.2  # the second-slowest frontier stitch fits at full speed
    sel.set_budget(max_latency_ms=budget, batch=1)
    quiet_best = _best_within(sel, budget, 1.0)
    slow_best = _best_within(sel, budget, 3.0)
    assert sel.current == quiet_best and slow_best != quiet_best
    for factor, best in ((1.0, quiet_best), (3.0, slow_best), (1.0, quiet_best)):
        served = _phase(sel, clock, factor)
        settled = next(k for k in range(len(served)) if all(c == best for c, _ in served[k:]))
        assert settled <= 20, (factor, served)
        assert all(ms <= budget for _, ms in served[settled:])  # within budget once settled
    d = sel.describe()["adaptive"]
    assert d["correction"] == pytest.approx(1.0) and d["observed_calls"] > 0
    assert d["observed_ms"] == pytest.approx(d["predicted_ms"], rel=1e-6)


def test_static_selector_misses_the_budget_under_the_same_slowdown(folder):
    clock = SimClock()
    sel = Selector(folder, clock=clock, adaptive=False)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    budget = sorted(lat.values())[-2] * 1.2
    first = sel.set_budget(max_latency_ms=budget, batch=1)
    served = _phase(sel, clock, 3.0)
    assert {c for c, _ in served} == {first} and all(ms > budget for _, ms in served)
    assert sel.correction == 1.0 and "adaptive" not in sel.describe()


def test_no_flapping_when_speed_hovers_on_a_boundary(folder):
    clock = SimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.05)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    budget = sorted(lat.values())[-2] * 1.2
    sel.set_budget(max_latency_ms=budget, batch=1)
    edge = budget / lat[sel.current]  # the factor at which the current stitch just meets the budget
    _phase(sel, clock, edge * 1.05)  # just over: switch down once
    switches, prev = 0, sel.current
    for k in range(200):  # the device speed wobbles +-2 % around 3 % below the boundary
        _phase(sel, clock, edge * (0.95 + 0.04 * (k % 2)), calls=1)
        switches += sel.current != prev
        prev = sel.current
    assert switches <= 1


class ThreadSimClock(SimClock):
    """SimClock with its read-pair state per thread, so threads may call the selector at once."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def __call__(self) -> float:
        second = getattr(self._local, "second", False)
        self._local.second = not second
        if not second:
            return 0.0
        return self.factor * self.sel.candidates[self.sel.current].latency_ms[1]["p50"] / 1e3


def test_calls_from_threads_while_the_device_slows(folder):
    import time

    clock = ThreadSimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.05)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    budget = sorted(lat.values())[-2] * 1.2
    sel.set_budget(max_latency_ms=budget, batch=1)
    ref = {i: sel.run(X, stitch=i) for i in sel.frontier}
    errors, counts, stop = [], [0] * 4, threading.Event()

    def worker(k):
        while not stop.is_set():
            try:
                y = sel(X)
            except Exception as exc:  # noqa: BLE001 - any error in a thread fails the test
                errors.append(exc)
                return
            counts[k] += 1
            if not any(np.allclose(y, r, atol=1e-5) for r in ref.values()):
                errors.append(y)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    active = []
    for factor in (1.0, 3.0, 1.0):
        clock.factor = factor
        start = sum(counts)
        while sum(counts) < start + 150:  # the threads serve at least 150 calls at this speed
            time.sleep(0.005)
        active.append(sel.current)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and min(counts) > 0
    assert sel.tracker.calls == sum(counts)
    assert active == [_best_within(sel, budget, 1.0), _best_within(sel, budget, 3.0), _best_within(sel, budget, 1.0)]


# ---- the NOMINAL / CORRECTED state machine: exact call indices, derived by hand from the algorithm ----

def _trace(tr, ratios, start):
    """Feed stitch 0 (profiled 10 ms) one call per ratio; ``{call index: answer}`` of non-NONE answers."""
    from snnet_export.runtime.adaptive import NONE

    out = {}
    for k, r in enumerate(ratios, start=start):
        ans = tr.record(0, 1, r * 0.010)
        if ans != NONE:
            out[k] = ans
    return out


@pytest.mark.parametrize("stat, enter_at, return_at", [("p50", 42, 51), ("p90", 33, 45)])
def test_state_machine_enters_and_returns_at_the_derived_calls(stat, enter_at, return_at):
    """W=20, check every 3, min_samples 10; 30 calls at 1x, then 1.4x (below the 1.5x step band)
    until entered, then 1x (1 is not below 1.4 / 1.5: no step either).

    Call 1 is a warm-up, so at call 30 the window holds 20 ones. p50: the upper median R[10] is 1.4
    once 10 of 20 samples are 1.4 (call 40), first check at 42. p90 (profiled p90 = p50 here):
    U[ceil(0.9 * 20) - 1] = U[17] is 1.4 > 1.30 once 3 samples are 1.4: call 33. Leave check on the
    10 newest: median Rk[5] <= 1.05 needs 6 ones, the p90 rank Uk[min(8, 10 - 2)] <= 1.15 needs 9 ones:
    it first passes at 48 (p50) or 42 (p90). Entered because slower, the loop is on hold: the return
    needs one passing check more, at 51 or 45.
    """
    from snnet_export.runtime.adaptive import CORRECTED, NOMINAL, RECHOOSE, RETURN

    tr = LatencyTracker({(0, 1): 10.0}, stat=stat)
    assert _trace(tr, [1.0] * 30, 1) == {} and tr.state == NOMINAL
    got = _trace(tr, [1.4] * (enter_at - 30), 31)
    assert got == {enter_at: RECHOOSE} and tr.state == CORRECTED and tr.speed_factor == pytest.approx(
        1.4 if stat == "p50" else 1.0)
    assert tr.latency_factor == pytest.approx(1.4)  # p90: the tail; p50: the median
    got = _trace(tr, [1.0] * (return_at - enter_at), enter_at + 1)
    assert list(got.values())[-1] == RETURN and max(got) == return_at
    assert tr.state == NOMINAL and tr.speed_factor == 1.0 == tr.latency_factor and tr.take_request() == RETURN


@pytest.mark.parametrize("stat", ["p50", "p90", "p99"])
def test_a_load_step_is_followed_within_three_samples_and_its_end_within_fifteen(stat):
    """30 calls at 1x, then 3x: samples 31-33 are above 1.0 x 1.5, so call 33 (not a check) cuts the window
    to them and enters CORRECTED, on hold, at their median, 3 (the latency factor is their largest, 3:
    no tail of 3 samples). Then 1x: 34-36 are below 3 / 1.5, so call 36 keeps those three and re-chooses
    at factors 1.0; the leave check needs 10 samples since the step (n = 12 at the check of 45) and, on
    hold, two passing checks: RETURN at 48. A single slow call (3x at 52, 1x after) is no step and, being
    the largest, no tail either (the hold ended with the return)."""
    from snnet_export.runtime.adaptive import NOMINAL, RECHOOSE, RETURN

    tr = LatencyTracker({(0, 1): 10.0}, stat=stat)
    assert _trace(tr, [1.0] * 30, 1) == {}
    assert _trace(tr, [3.0] * 3, 31) == {33: RECHOOSE}
    assert tr.speed_factor == pytest.approx(3.0) == tr.latency_factor and len(tr._window) == 3 and tr.hold
    assert _trace(tr, [1.0] * 15, 34) == {36: RECHOOSE, 48: RETURN} and tr.state == NOMINAL and not tr.hold
    assert _trace(tr, [1.0] * 3 + [3.0] + [1.0] * 40, 49) == {} and tr.state == NOMINAL


def test_a_return_that_does_not_hold_doubles_the_calm_period():
    """p90, 1.4x (no step): entered at 33 (as above, on hold), returned at 45 (the leave check passes at
    42 and 45). The load comes back at call 46: after the cleared window 10 samples are needed (call 55),
    so it is re-entered at the check of call 57, within 2W calls of the return: calm = 2. Ones from call
    58: the leave check first passes at 66 (calls 58-66 are 9 of the 10 newest), so the return needs
    calm + 1 (hold) = 3 checks in a row, 66, 69 and 72, and comes at 72, not 69. (The selector reports
    the relapse when it leaves the stitch: ``penalise``.)"""
    from snnet_export.runtime.adaptive import RECHOOSE, RETURN

    tr = LatencyTracker({(0, 1): 10.0}, stat="p90")
    assert _trace(tr, [1.0] * 30 + [1.4] * 3 + [1.0] * 12, 1) == {33: RECHOOSE, 45: RETURN}
    assert _trace(tr, [1.4] * 12, 46) == {57: RECHOOSE}
    tr.penalise(0)  # what the selector does when stitch 0 now misses its budget: a relapse
    assert _trace(tr, [1.0] * 15, 58) == {69: RECHOOSE, 72: RETURN}  # 69: 12 ones of 20, the median moved


def test_same_trace_same_decisions():
    """The loop is a function of its inputs: replaying one latency trace gives the same answers."""
    rng = np.random.default_rng(7)
    ratios = np.concatenate([rng.lognormal(0, 0.05, 200), rng.lognormal(0.7, 0.3, 200), rng.lognormal(0, 0.05, 200)])
    runs = []
    for _ in range(2):
        tr = LatencyTracker({(0, 1): 10.0, (1, 1): 20.0}, stat="p99", tail_ms={(0, 1): 12.0, (1, 1): 25.0})
        runs.append([tr.record(k % 2 if k % 50 < 5 else 0, 1, float(r) * 0.010) for k, r in enumerate(ratios)])
    assert runs[0] == runs[1] and 2 in runs[0] and 1 in runs[0]


def test_returns_to_the_profiles_choice_when_its_margin_is_below_the_hysteresis(folder):
    """The quiet choice meets the budget by 7 % only, less than the 10 % hysteresis an up-switch needs
    under correction: the return to NOMINAL brings it back anyway, within 20 calls of the recovery."""
    clock = SimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.10, latency_stat="p99")
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p99"] for i in sel.frontier}
    quiet = sorted(lat, key=lat.get)[-2]
    budget = lat[quiet] * 1.07
    assert sel.set_budget(max_latency_ms=budget, batch=1) == quiet
    for factor, best in ((1.0, quiet), (3.0, _best_within(sel, budget, 3.0)), (1.0, quiet)):
        served = _phase(sel, clock, factor)
        settled = next(k for k in range(len(served)) if all(c == best for c, _ in served[k:]))
        assert settled <= 20, (factor, served)
    assert sel.tracker.state == "nominal"


class StitchSimClock(SimClock):
    """Only stitches slower than ``cut`` ms (profiled) are slowed by ``factor``: the fast ones look nominal."""

    cut = 0.0

    def __call__(self) -> float:
        if self._second:
            p50 = self.sel.candidates[self.sel.current].latency_ms[1]["p50"]
            self.t += (self.factor if p50 > self.cut else 1.0) * p50 / 1e3
        self._second = not self._second
        return self.t


def test_back_off_bounds_switches_when_recovery_is_only_apparent(folder):
    """Contention that slows only the big stitches: the small one looks as profiled, so the loop returns,
    the big one is slow again, and so on. The doubling calm period bounds the retries."""
    clock = StitchSimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.05)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    order = sorted(lat, key=lat.get)
    budget = lat[order[-2]] * 1.2
    sel.set_budget(max_latency_ms=budget, batch=1)
    clock.cut = lat[order[-3]] * 1.01  # stitches up to the third-slowest are not slowed
    served = _phase(sel, clock, 3.0, calls=1000)
    ids = [c for c, _ in served]
    switches = sum(a != b for a, b in zip(ids, ids[1:]))
    late = ids[500:]
    # a return every ~25 calls without the back-off (3 switches each: ~120 per 1,000); measured 27 with it
    assert switches <= 36, switches
    assert sum(a != b for a, b in zip(late, late[1:])) <= 16  # calm at its cap: one retry per ~120 calls


def test_returns_to_the_stitch_served_before_when_the_device_was_already_off_its_profile(folder):
    """Background load makes everything 1.3x slower than profiled (CORRECTED before the step); a load
    step to 3x, then back to 1.3x: the loop goes back to the stitch it served at 1.3x (its home), even
    though that stitch meets the budget by less than the hysteresis, and not to the profile's choice."""
    clock = SimClock()
    sel = Selector(folder, clock=clock, hysteresis=0.10)
    clock.sel = sel
    lat = {i: sel.candidates[i].latency_ms[1]["p90"] for i in sel.frontier}
    order = sorted(lat, key=lat.get)
    budget = lat[order[-2]] * 1.3 * 1.05  # at 1.3x the second-slowest fits by 5 %
    sel.set_budget(max_latency_ms=budget, batch=1)
    quiet = _phase(sel, clock, 1.3)
    before = quiet[-1][0]
    assert before == order[-2] and sel.tracker.corrected
    loaded = _phase(sel, clock, 3.0)
    assert loaded[-1][0] == _best_within(sel, budget, 3.0) != before
    served = _phase(sel, clock, 1.3)
    settled = next(k for k in range(len(served)) if all(c == before for c, _ in served[k:]))
    assert settled <= 20, served
    assert sel.tracker.corrected and all(ms <= budget for _, ms in served[settled:])
