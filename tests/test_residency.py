"""The memory budget (max_resident_mb): LRU eviction order, refusal, outputs after reload, threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from click.testing import CliRunner
from engine_folder import write_profile

from snnet_export.cli import cli
from snnet_export.engine_folder.manifest import load_manifest
from snnet_export.engine_folder.weight_file import WeightFile
from snnet_export.errors import MemoryBudgetError, SelectorError
from snnet_export.export.stitches import export_stitches
from snnet_export.runtime import Selector
from snnet_export.runtime.ort.runner import OrtRunner, ort_session
from snnet_export.runtime.residency import MiB, Residency, estimate_session_bytes, rss_anon_bytes

IDS = [0, 1, 2, 10, 36]
pytestmark = pytest.mark.filterwarnings("ignore:.*no known accuracy")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "tiny"
    m = export_stitches("tiny", "random", out, configs=",".join(map(str, IDS)), progress=False, verify=False)
    write_profile(out, {e["id"]: 1e9 / e["flops"] for e in m["configs"]})
    return out


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(folder, x):
    """Every stitch's logits from a Selector that keeps all of them resident (no budget)."""
    with Selector(folder, resident="all", adaptive=False) as sel:
        return {i: sel.run(x, stitch=i) for i in IDS}


def _sizes(folder):
    m = load_manifest(folder)
    est = {e["id"]: estimate_session_bytes(e["onnx_bytes"]) for e in m["configs"]}
    return m, m["weights"]["size"], est


def _loader(folder, m, opened):
    weights = WeightFile(folder, m["weights"])
    entries = {e["id"]: e for e in m["configs"]}

    def load(cfg_id):
        opened.append(cfg_id)
        return OrtRunner(ort_session(folder, entries[cfg_id], weights, shared_arena=True), cfg_id,
                         release_activations=True)
    return load


def test_least_recently_used_is_evicted_first(folder, x, reference):
    m, weights, est = _sizes(folder)
    opened = []
    # room for exactly three sessions (unmeasured: each counts its estimate)
    budget = weights + sum(sorted(est.values())[-3:])
    res = Residency(_loader(folder, m, opened), weights, budget, est, measure=lambda: None, measure_rss=None)
    for i in (0, 1, 2):
        np.testing.assert_allclose(res.run(i, x), reference[i], rtol=1e-5, atol=1e-6)
    assert res.resident() == [0, 1, 2] and res.evictions == 0
    res.run(0, x)  # 0 becomes the most recently used: 1 is now the oldest
    res.run(10, x)
    assert res.resident() == [2, 0, 10] and res.evictions == 1
    res.run(36, x)
    assert res.resident() == [0, 10, 36] and res.evictions == 2
    assert opened == [0, 1, 2, 10, 36]  # a resident stitch is never reloaded
    assert res.used_bytes <= budget
    cold = res.describe()["cold_switch_ms"]
    assert cold["n"] == 5 and 0 < cold["p50"] <= cold["p99"]


def test_a_session_in_use_is_not_evicted(folder, x, reference):
    m, weights, est = _sizes(folder)
    budget = weights + sum(sorted(est.values())[-2:])  # two sessions
    res = Residency(_loader(folder, m, []), weights, budget, est, measure=lambda: None, measure_rss=None)
    held = res.acquire(0)  # a call on stitch 0 in flight (another thread's, say)
    res.run(1, x)
    res.run(2, x)  # 0 is the least recently used but busy: 1 goes instead
    assert sorted(res.resident()) == [0, 2]
    np.testing.assert_allclose(held(x), reference[0], rtol=1e-5, atol=1e-6)  # still usable
    res.release(0)
    res.run(10, x)  # now 0 is idle and the oldest
    assert res.resident() == [2, 10]


def test_load_waits_for_a_busy_session_instead_of_exceeding_the_budget(folder, x):
    m, weights, est = _sizes(folder)
    budget = weights + max(est.values())  # one session
    res = Residency(_loader(folder, m, []), weights, budget, est, measure=lambda: None, measure_rss=None)
    res.acquire(0)
    done = threading.Event()
    t = threading.Thread(target=lambda: (res.run(1, x), done.set()))
    t.start()
    assert not done.wait(0.5)  # 1 cannot load while 0 is in use
    assert res.resident() == [0]
    res.release(0)
    assert done.wait(30)
    t.join()
    assert res.resident() == [1]


def test_impossible_budget_is_refused_with_the_minimum(folder):
    m, weights, est = _sizes(folder)
    minimum = -(-(weights + max(est.values())) // MiB)
    with pytest.raises(MemoryBudgetError, match=f"the minimum is {minimum} MiB"):
        Selector(folder, max_resident_mb=weights / MiB - 0.5)
    with pytest.raises(SelectorError, match="finite positive"):
        Selector(folder, max_resident_mb=float("nan"))
    Selector(folder, resident="none", max_resident_mb=minimum).close()  # the minimum itself is accepted
    result = CliRunner().invoke(cli, ["select", str(folder), "--min-throughput", "1", "--max-resident-mb", "1"])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"the minimum is {minimum} MiB" in lines[0] and "Traceback" not in result.output


def test_budgeted_selector_outputs_match_after_eviction_and_reload(folder, x, reference):
    m, weights, est = _sizes(folder)
    budget_mb = (weights + 2.5 * max(est.values())) / MiB
    with Selector(folder, adaptive=False, max_resident_mb=budget_mb) as sel:
        assert sel.residency is not None and len(sel.resident) <= 2
        order = [0, 1, 2, 10, 36, 0, 2, 36, 1, 10]
        for i in order:
            np.testing.assert_allclose(sel.run(x, stitch=i), reference[i], rtol=1e-5, atol=1e-6)
            # the accounting holds exactly; the measured side (real RSS growth, on a folder this tiny
            # mostly interpreter noise) is covered with an injected RSS below and by selector_bench
            assert sel.residency.accounted_bytes <= budget_mb * MiB
            assert i in sel.resident  # the stitch just called stays resident
        info = sel.describe()["residency"]
        assert info["evictions"] > 0 and info["loads"] > len(IDS)  # stitches were reloaded
        assert info["resident"][-1] == order[-1] and info["budget_mb"] == round(budget_mb, 1)
        best = max(sel.frontier, key=lambda i: sel.candidates[i].accuracy)
        np.testing.assert_allclose(sel(x), reference[best], rtol=1e-5, atol=1e-6)  # the active stitch loads too


def test_threads_share_a_tight_budget(folder, x, reference):
    m, weights, est = _sizes(folder)
    budget_mb = (weights + 2.5 * max(est.values())) / MiB
    sel = Selector(folder, adaptive=False, max_resident_mb=budget_mb)
    errors, over = [], []

    def worker(k):
        rng = np.random.default_rng(k)
        for _ in range(12):
            i = int(rng.choice(IDS))
            y = sel.run(x, stitch=i)
            if not np.allclose(y, reference[i], rtol=1e-5, atol=1e-6):
                errors.append(i)
            if sel.residency.accounted_bytes > budget_mb * MiB:  # (measured side: see above)
                over.append(sel.residency.accounted_bytes)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not over
    assert sel.residency.describe()["evictions"] > 0
    sel.close()
    with pytest.raises(SelectorError, match="closed"):
        sel.run(x, stitch=0)


@pytest.mark.skipif(rss_anon_bytes() is None, reason="RssAnon needs Linux /proc")
def test_measured_session_size_is_recorded(folder, x):
    with Selector(folder, adaptive=False, max_resident_mb=1024) as sel:
        for i in IDS:
            sel.run(x, stitch=i)
        info = sel.describe()["residency"]
    assert set(info["resident"]) == set(IDS) and info["evictions"] == 0
    assert set(info["measured_mb"]) == set(IDS)  # single-threaded: every load was measured
    assert all(info["session_mb"][i] >= info["measured_mb"][i] for i in IDS)


def test_measured_growth_over_the_budget_evicts_idle_stitches_lru_first_and_trims():
    """The budget holds against the process's real RSS growth, not only the accounting: heap the
    runs leave behind (here injected) evicts idle stitches, least recently used first, the one just
    used last, trimming the heap after each round until the measured growth fits."""
    rss = {"now": 100 * MiB}
    trims = []

    def trim():
        trims.append(len(res.resident()))
        rss["now"] -= MiB // 2  # each trim hands back half a MiB: less than the session counted

    est = {i: MiB for i in range(4)}
    res = Residency(lambda i: (lambda x: x + i), 10 * MiB, 15 * MiB, est, measure=lambda: None,
                    measure_rss=lambda: rss["now"], rss_baseline=100 * MiB, trim=trim)
    x = np.zeros(2, np.float32)
    for i in (0, 1, 2, 3):
        rss["now"] += MiB  # each load grows the process by its session
        np.testing.assert_array_equal(res.run(i, x), x + i)
    assert res.resident() == [0, 1, 2, 3] and res.evictions == 0
    assert res.describe()["measured_growth_mb"] == 4.0 and res.accounted_bytes == 14 * MiB
    res.run(1, x)  # 1 becomes the most recently used: LRU order is now 0, 2, 3, 1
    rss["now"] += 12 * MiB  # a call leaves 12 MiB of C heap: 16 MiB measured, over the 15 MiB budget
    res.run(3, x)
    info = res.describe()
    # 0 went, the trim left 15.5 MiB measured, so 2 went too; 3 (just used) and 1 stay
    assert res.resident() == [1, 3] and res.evictions == 2
    assert trims == [3, 2] and info["measured_growth_mb"] == 15.0 and res.used_bytes <= 15 * MiB
    assert info["max_measured_growth_mb"] == 16.0 and info["accounted_mb"] == 12.0


def test_measured_growth_never_evicts_a_busy_stitch(caplog):
    rss = {"now": 0}
    res = Residency(lambda i: (lambda x: x), 10 * MiB, 12 * MiB, {0: MiB, 1: MiB}, measure=lambda: None,
                    measure_rss=lambda: rss["now"], rss_baseline=0)
    x = np.zeros(1, np.float32)
    res.run(0, x)
    res.run(1, x)
    rss["now"] = 40 * MiB  # far over: everything idle goes but the stitch just used
    with caplog.at_level("WARNING"):
        res.run(1, x)
    assert res.resident() == [1]
    assert "raise max_resident_mb" in caplog.text
