"""The runtime selector: Pareto choice, fallback, hysteresis, threads, shared weights, no torch."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from engine_folder import write_profile

from snnet_export.export.stitches import export_stitches
from snnet_export.engine_folder.manifest import load_manifest, save_manifest
from snnet_export.runtime import Selector, SelectorError
from snnet_export.engine_folder.profile import pareto_front

IDS = [0, 1, 2, 3, 10, 36, 37, 50, 70]


def _write_profile(folder, speed, batches=(1, 8)):
    """A profile whose throughput per stitch is ``speed[id]`` at batch 1 (x4 at batch 8)."""
    return write_profile(folder, speed, batches, gain=lambda b: 4 if b > 1 else 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Tiny stitches with speeds from FLOPs and accuracies that make a non-trivial frontier."""
    out = tmp_path_factory.mktemp("sel") / "tiny"
    m = export_stitches("tiny", "random", out, configs=",".join(map(str, IDS)), progress=False)
    # accuracy rises with FLOPs except stitch 36, made worse than a faster stitch (off the frontier)
    for e in m["configs"]:
        e["accuracy"] = {"acc1": 50 + 40 * e["flops"] / max(x["flops"] for x in m["configs"]), "acc5": None}
    next(e for e in m["configs"] if e["id"] == 36)["accuracy"]["acc1"] = 10.0
    save_manifest(out, m)
    _write_profile(out, {e["id"]: 1e9 / e["flops"] for e in m["configs"]})
    return out


def _table(sel, batch=1):
    return {i: (c.throughput[batch], c.accuracy) for i, c in sel.candidates.items()}


def test_frontier_and_choice_match_brute_force(folder):
    sel = Selector(folder)
    table = _table(sel)
    assert sel.frontier == pareto_front((i, t, a) for i, (t, a) in table.items())
    assert 36 not in sel.frontier and set(sel.resident) == set(sel.frontier)
    speeds = sorted(t for t, _ in table.values())
    for budget in [speeds[0] * 0.5, *[(a + b) / 2 for a, b in zip(speeds, speeds[1:])]]:
        sel.hysteresis = 0.0
        chosen = sel.set_budget(min_throughput=budget)
        best = max((a, i) for i, (t, a) in table.items() if t >= budget)[1]
        assert chosen == best == sel.current


def test_latency_budget(folder):
    sel = Selector(folder, hysteresis=0.0)
    chosen = sel.set_budget(max_latency_ms=1e9, batch=8)
    assert chosen == max(sel.frontier, key=lambda i: sel.candidates[i].accuracy)
    lat = {i: sel.candidates[i].latency_ms[8]["p90"] for i in sel.frontier}
    limit = sorted(lat.values())[1] * 1.01
    chosen = sel.set_budget(max_latency_ms=limit, batch=8)
    assert lat[chosen] <= limit
    assert all(sel.candidates[i].accuracy <= sel.candidates[chosen].accuracy for i in lat if lat[i] <= limit)


def test_fallback_to_fastest_with_warning(folder):
    sel = Selector(folder)
    fastest = max(sel.frontier, key=lambda i: sel.candidates[i].throughput[1])
    with pytest.warns(UserWarning, match="no stitch meets the budget"):
        assert sel.set_budget(min_throughput=1e12) == fastest


def test_hysteresis_prevents_flapping(folder):
    sel = Selector(folder, hysteresis=0.05)
    table = _table(sel)
    front = sorted(sel.frontier, key=lambda i: table[i][0])  # slow -> fast
    slow, fast = front[-2], front[-1]
    boundary = table[slow][0]  # budgets around the slower stitch's throughput
    sel.set_budget(min_throughput=boundary * 1.02)  # slow misses it -> fast
    assert sel.current == fast
    switches = 0
    for k in range(20):  # hover within +-2 % of the boundary
        before = sel.current
        sel.set_budget(min_throughput=boundary * (0.98 if k % 2 else 1.02))
        switches += sel.current != before
    assert switches == 0 and sel.current == fast
    sel.set_budget(min_throughput=boundary * 0.9)  # clear by more than the margin -> switch up
    assert sel.current == slow
    sel.hysteresis = 0.0
    flaps = 0
    for k in range(20):
        before = sel.current
        sel.set_budget(min_throughput=boundary * (0.98 if k % 2 else 1.02))
        flaps += sel.current != before
    assert flaps == 20  # without hysteresis the same budgets flap every time


def test_latency_hysteresis_sets_the_up_margin_on_a_latency_budget_alone(folder):
    """The SLO server's setting: 33 % up-margin on throughput, none on the p99 budget."""
    sel = Selector(folder, hysteresis=0.33, adaptive=False, latency_stat="p99")
    p99 = {i: sel.candidates[i].latency_ms[sel.batch]["p99"] for i in sel.frontier}
    front = sorted(sel.frontier, key=p99.get)  # fast -> slow
    fast, slow = front[0], front[1]
    sel.set_budget(max_latency_ms=p99[slow] * 0.99)  # slow misses -> fast
    assert sel.current == fast
    sel.set_budget(max_latency_ms=p99[slow] * 1.1)  # slow fits by 10 %, not by the 33 % margin: stay
    assert sel.current == fast
    sel.latency_hysteresis = 0.0  # no margin on the latency: up to the slower, more accurate stitch
    sel.set_budget(max_latency_ms=p99[slow] * 1.1)
    assert sel.current == slow
    sel.set_budget(max_latency_ms=p99[slow] * 0.99)
    sel.latency_hysteresis = float("inf")  # the server's dwell: no up-switch at all
    assert sel.set_budget(max_latency_ms=p99[slow] * 10) == fast


def test_threads_get_correct_outputs_while_budget_changes(folder):
    # not adaptive: the fake profile is far from the real speed, the correction would move the choice
    sel = Selector(folder, hysteresis=0.0, adaptive=False)
    table = _table(sel)
    front = sorted(sel.frontier, key=lambda i: table[i][0])
    a, b = front[0], front[-1]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = {a: sel.run(x, stitch=a), b: sel.run(x, stitch=b)}
    assert not np.allclose(ref[a], ref[b])
    errors, stop = [], threading.Event()

    def worker():
        while not stop.is_set():
            y = sel(x)
            if not any(np.allclose(y, r, atol=1e-5) for r in ref.values()):
                errors.append(y)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    chosen = [sel.set_budget(min_throughput=table[b][0] if k % 2 else table[a][0]) for k in range(200)]
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert chosen[::2] == [a] * 100 and chosen[1::2] == [b] * 100 and sel.current == b


def test_resident_sessions_share_one_copy_of_the_weights(folder):
    sel = Selector(folder, resident="all")
    assert set(sel.resident) == set(IDS)
    m = load_manifest(folder)
    runners = sel._runners
    # every session's initializers are views into the ONE memory map of the weight file
    sessions = [r.session for r in runners.values()]
    values, _, weights = sessions[0]._snnet_keepalive
    base, size = weights._map.ctypes.data, weights._map.size
    seen = {}
    for sess, entry in zip(sessions, [e for e in m["configs"] if e["id"] in runners]):
        keep, _, w = sess._snnet_keepalive
        assert w is weights
        for (_name, index), value in zip(entry["initializers"], keep):
            ptr = value.data_ptr()
            assert base <= ptr < base + size
            assert seen.setdefault(index, ptr) == ptr  # same tensor, same address in every session
    assert len(seen) == len(m["weights"]["tensors"])


def test_unknown_accuracy_uses_flops_with_warning(folder, tmp_path):
    import shutil

    dst = tmp_path / "noacc"
    shutil.copytree(folder, dst)
    m = load_manifest(dst)
    for e in m["configs"]:
        e["accuracy"] = None
    save_manifest(dst, m)
    with pytest.warns(UserWarning, match="FLOPs as the accuracy proxy"):
        sel = Selector(dst)
    assert all(sel.candidates[e["id"]].accuracy == e["flops"] / 1e9 for e in m["configs"])


def test_missing_profile_is_a_clear_error(folder, tmp_path):
    import shutil

    dst = tmp_path / "noprof"
    shutil.copytree(folder, dst)
    for p in dst.glob("profile.*.json"):
        p.unlink()
    with pytest.raises(SelectorError, match="snnet-export bench"):
        Selector(dst)
    with pytest.raises(SelectorError, match="needs min_throughput"):
        Selector(folder).set_budget()


def test_runtime_never_imports_torch_timm_or_click(folder):
    code = (
        "import sys, numpy as np\n"
        "from snnet_export.runtime import Selector\n"
        f"sel = Selector({str(folder)!r})\n"
        "sel.set_budget(min_throughput=1.0)\n"
        "y = sel(np.zeros((1, 3, 32, 32), np.float32))\n"
        "assert y.shape == (1, 10)\n"
        "bad = [m for m in ('torch', 'timm', 'click') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_frontier_follows_the_profiles_tie_groups(folder, tmp_path):
    """Two neighbours on the frontier recorded as tied in speed: the more accurate stands for both."""
    import json

    from snnet_export.engine_folder.profile import find_profile

    sel = Selector(folder, resident="none")
    front = sel.frontier  # slowest (most accurate) first
    a, b = front[-2], front[-1]
    prof = find_profile(folder, "ort")
    prof.pop("_file")
    for r in prof["stitches"]:
        if r["id"] in (a, b) and r["batch"] == 1:
            r["tie_group"] = sorted((a, b))
    path = tmp_path / "profile.tied.json"
    path.write_text(json.dumps(prof))
    tied = Selector(folder, resident="none", profile=path)
    assert a in tied.frontier and b not in tied.frontier and sel.candidates[a].accuracy > sel.candidates[b].accuracy
    # what b dominated alone may enter (here stitch 36, faster than a but less accurate than b)
    table = _table(tied)
    assert tied.frontier == pareto_front(((i, t, acc) for i, (t, acc) in table.items()), {a: min(a, b), b: min(a, b)})
