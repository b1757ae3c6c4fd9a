"""The serve package without a server: the request door, per-request errors in a mixed batch, the
queue clock, the SLO policy's budget and choice, options and the libpython set-up."""
from __future__ import annotations

import os
import sysconfig
import time
from types import SimpleNamespace

import numpy as np
import pytest

from engine_folder import make_engine_folder, write_profile
from snnet_export.errors import ServeError
from snnet_export.runtime import Selector
from snnet_export.serve import ServeOptions
from snnet_export.serve.engine import ERROR_KEY, EngineHolder
from snnet_export.serve.options import prepare_environment
from snnet_export.serve.policy import QueueClock


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import json

    f = make_engine_folder(tmp_path_factory.mktemp("served"), ids=(0, 1, 2), batch_max=64)
    m = json.loads((f / "manifest.json").read_text())
    for e, acc in zip(m["configs"], (70.0, 80.0, 90.0)):
        e["accuracy"] = {"acc1": acc, "acc5": None}
    (f / "manifest.json").write_text(json.dumps(m))
    write_profile(f, {0: 3000.0, 1: 2000.0, 2: 1000.0}, batches=(1, 4, 16, 64), gain=lambda b: b ** 0.5)
    return f


@pytest.fixture(scope="module")
def holder(folder):
    h = EngineHolder(folder, ServeOptions(slo_ms=1000.0, threads=1))
    yield h
    h.close()


def _req(x, **params):
    return SimpleNamespace(data={"input": x}, parameters=params or None)


def _error(resp):
    return bytes(resp[ERROR_KEY]).decode() if ERROR_KEY in resp else None


def test_mixed_batch_answers_each_request_alone(holder, folder):
    rng = np.random.default_rng(0)
    good = [rng.standard_normal((n, 3, 4, 4)).astype(np.float32) for n in (1, 3, 2)]
    nan = good[0].copy()
    nan[0, 1, 2, 3] = np.nan
    batch = [_req(good[0]), _req(nan), _req(good[1], stitch=1), _req(good[2], stitch=7),
             _req(np.zeros((0, 3, 4, 4), np.float32)), _req(good[2], max_latency_ms="soon"),
             _req(good[2].astype(np.float64)), _req(good[2], stitch=True), _req(np.full((1, 3, 4, 4), np.inf, np.float32))]
    out = holder.infer(batch)
    errors = [_error(r) for r in out]
    assert errors[0] is None and errors[2] is None
    assert "non-finite" in errors[1] and "unknown stitch 7" in errors[3] and "empty batch" in errors[4]
    assert "max_latency_ms" in errors[5] and "FP32" in errors[6] and "integer stitch id" in errors[7]
    assert "non-finite" in errors[8]
    assert all("\n" not in e and "Traceback" not in e for e in errors if e)
    with Selector(folder, threads=1) as ref:
        for x, r in ((good[0], out[0]), (good[1], out[2])):
            sid = int(r["stitch"][0, 0])
            assert r["stitch"].shape == (len(x), 1) and r["stitch"].dtype == np.int32
            np.testing.assert_allclose(r["logits"], ref.run(x, stitch=sid), atol=1e-5, rtol=0)
    assert int(out[2]["stitch"][0, 0]) == 1  # pinned
    assert holder.counter.snapshot()["errors"] >= 7


def test_policy_runs_most_accurate_within_slo_and_fastest_for_tight_budgets(holder):
    x = np.zeros((2, 3, 4, 4), np.float32)
    assert int(holder.infer([_req(x)])[0]["stitch"][0, 0]) == 2  # SLO 1 s: the most accurate
    tight = holder.infer([_req(x), _req(x, max_latency_ms=0.01)])  # batch-mates return together
    assert [int(r["stitch"][0, 0]) for r in tight] == [0, 0]
    holder.current.policy.dwell_s = 0.3
    assert int(holder.infer([_req(x)])[0]["stitch"][0, 0]) == 0  # no way back up during the dwell
    time.sleep(0.35)
    assert int(holder.infer([_req(x)])[0]["stitch"][0, 0]) == 2  # and back up after it


def test_queue_clock_bounds_the_wait_of_the_oldest_request():
    q = QueueClock(max_queue_delay_s=0.001, max_batch=8)
    gap = q.pipeline_gap  # the default until full batches measured it
    assert q.started(10.0) == 0.001
    q.finished(10.0, 10.020, 4)
    assert q.started(10.0205) == pytest.approx(0.0205)  # arrived during the last batch at the earliest
    q.finished(10.0205, 10.030, 4)
    assert q.started(10.5) == pytest.approx(0.001 + gap)  # idle gap: they arrived after the server went idle
    q.finished(10.5, 10.6, 8)  # full batches may leave a backlog: what waits arrived after the idle gap ended
    assert q.started(10.602) == pytest.approx(10.602 - 10.030)
    q.finished(10.602, 10.7, 8)
    assert q.started(10.702) == pytest.approx(10.702 - 10.030)  # and grows while the batches stay full
    assert q.pipeline_gap == pytest.approx(0.002)  # measured after full batches
    q.finished(10.702, 10.75, 3)  # a batch that is not full emptied the queue
    assert q.started(10.7525) == pytest.approx(0.0505)  # a gap of 2.5 ms is pipeline, not idle
    q.finished(10.7525, 10.76, 3)
    assert q.started(10.9) == pytest.approx(0.001 + 0.002)  # a long gap is idle


def test_compute_budget_caps_at_half_and_never_below_zero(holder):
    pol = holder.current.policy
    assert pol.compute_budget_ms(0.0) == pytest.approx(500.0)  # SLO 1000 ms: half
    assert pol.compute_budget_ms(0.8) == pytest.approx(1000 - 800 - 1.0)
    assert pol.compute_budget_ms(2.0) > 0
    assert pol.compute_budget_ms(0.0, budget_ms=10.0) == pytest.approx(5.0)
    assert [pol.profiled_batch(n) for n in (1, 2, 4, 5, 64, 100)] == [1, 4, 4, 16, 64, 64]


def test_failed_reload_keeps_serving_the_old_version(folder, tmp_path, caplog):
    link = tmp_path / "current"
    link.symlink_to(folder)
    h = EngineHolder(link, ServeOptions(threads=1))
    try:
        link.unlink()
        (tmp_path / "broken").mkdir()
        link.symlink_to(tmp_path / "broken")
        with caplog.at_level("ERROR"):
            assert h.reload() is False
        lines = [r for r in caplog.records if "reload" in r.getMessage()]
        assert len(lines) == 1 and "still serving" in lines[0].getMessage()
        out = h.infer([_req(np.zeros((1, 3, 4, 4), np.float32))])
        assert _error(out[0]) is None and h.current.folder == folder.resolve()
    finally:
        h.close()


def test_options_are_checked():
    with pytest.raises(ServeError, match="three different ports"):
        ServeOptions(http_port=9000, grpc_port=9000).check()
    with pytest.raises(ServeError, match="model-name"):
        ServeOptions(model_name="a b").check()
    with pytest.raises(ServeError, match="slo_ms"):
        ServeOptions(slo_ms=float("nan")).check()


def test_libpython_dir_goes_first_in_ld_library_path():
    env = {"LD_LIBRARY_PATH": "/opt/x"}
    added = prepare_environment(env)
    libdir = sysconfig.get_config_var("LIBDIR")
    if added is None:
        pytest.skip("this interpreter has no shared libpython")
    assert added == libdir and env["LD_LIBRARY_PATH"].split(os.pathsep)[:2] == [libdir, "/opt/x"]
    assert prepare_environment(env) == libdir and env["LD_LIBRARY_PATH"].count(libdir) == 1


def test_cli_refuses_a_folder_that_is_not_an_engine_folder_in_one_line(tmp_path):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--http-port", "18931", "--grpc-port", "18932",
                                      "--metrics-port", "18933"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "manifest" in lines[0], result.output
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--http-port", "9000", "--grpc-port", "9000"])
    assert result.exit_code == 1 and "three different ports" in result.output


BLOCK_PYTRITON = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pytriton":
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, _Block())
from snnet_export.cli import main
sys.argv = ["snnet-export", "serve", sys.argv[1]]
main()
"""


def test_without_the_serve_extra_the_command_names_it(folder):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", BLOCK_PYTRITON, str(folder)], capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert proc.returncode == 1 and "snnet-export[serve]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, lines


def test_a_memory_budget_below_the_weights_is_refused_in_one_line_before_serving(folder):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    result = CliRunner().invoke(cli, ["serve", str(folder), "--max-resident-mb", "0.01", "--http-port", "18934",
                                      "--grpc-port", "18935", "--metrics-port", "18936"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error:") and "max_resident_mb" in lines[0] and "minimum" in lines[0]
    assert "serving" not in result.output  # refused before Triton started


def test_under_a_memory_budget_every_stitch_can_be_pinned_and_loads_on_use(folder):
    from snnet_export.runtime.residency import MiB

    weights = (folder / "weights.fp32.bin").stat().st_size
    h = EngineHolder(folder, ServeOptions(threads=1, max_resident_mb=(weights + MiB // 2) / MiB + 0.01))
    try:
        sel = h.current.selector
        assert sel.residency is not None and len(sel.resident) < 3  # not all fit at once
        x = np.random.default_rng(3).standard_normal((2, 3, 4, 4)).astype(np.float32)
        with Selector(folder, threads=1) as ref:
            for sid in (0, 1, 2, 0):
                r = h.infer([_req(x, stitch=sid)])[0]
                assert _error(r) is None and int(r["stitch"][0, 0]) == sid
                np.testing.assert_allclose(r["logits"], ref.run(x, stitch=sid), atol=1e-5, rtol=0)
    finally:
        h.close()


def test_a_load_the_running_stitch_cannot_hold_moves_the_policy_down_before_its_latency_misses(folder):
    from snnet_export.serve.policy import SloPolicy

    with Selector(folder, threads=1, latency_stat="p99", resident="none") as sel:
        pol = SloPolicy(sel, slo_ms=1000.0, dwell_s=0.5)  # the latency budget fits every stitch
        assert pol.choose(4, 0.0, now=0.0) == 2  # idle: the most accurate
        t = 0.0
        while t < 1.0:  # stitch 2 busy 90 % of the last second: more than hold (0.8)
            pol.finished(t, t + 0.09, 0.0, False, 4)
            t += 0.1
        assert pol.util == 0.0 and pol.choose(4, 0.0, now=t) == 1  # stitch 1 is twice as fast: ~45 %
        assert pol.util == pytest.approx(0.9, abs=0.05)
        # the window still holds stitch 2's batches: counted as stitch 1 would have run them (~0.45),
        # so the policy does not fall through to the fastest stitch
        assert pol.choose(4, 0.0, now=t + 0.01) == 1 and pol.util == pytest.approx(0.45, abs=0.05)
        for k in range(10):  # the load halves, on stitch 1: 20 % busy; stitch 2 would be 40 % < up (0.6)
            pol.finished(t + 0.1 * k, t + 0.1 * k + 0.02, 0.0, False, 4)
        assert pol.choose(4, 0.0, now=t + 0.3) == 1  # not during the dwell after the down-switch
        assert pol.choose(4, 0.0, now=t + 1.0) == 2  # after it: back up
        pol.finished(t + 1.0, t + 1.01, 0.0, True, 64)  # a full batch: saturated, whatever the window says:
        assert pol.choose(4, 0.0, now=t + 1.02) == 2 and pol.util >= pol.hold  # the running stitch may stay,
        assert pol.throughput_floor(t + 1.02) == pytest.approx(sel.candidates[2].throughput[4])  # none above it


def test_pipeline_time_between_batches_counts_as_busy_but_does_not_scale_with_the_stitch(folder):
    from snnet_export.serve.policy import LoadMeter

    m = LoadMeter(window_s=1.0)
    for k in range(10):  # 20 ms compute, then 25 ms to the next: 15 ms (the pipeline gap) count, but not before the first
        m.add(0.045 * k, 0.045 * k + 0.02, 0.015, False, work=0.02 * 1000.0)
    work, pipeline, span = m.window(0.5)
    assert work == pytest.approx(200.0) and pipeline == pytest.approx(9 * 0.015) and span == pytest.approx(0.5)
    m.add(5.0, 5.01, 0.015, False, work=10.0)  # after an idle spell: the gap is idle, not pipeline
    assert m.window(5.01) == pytest.approx((10.0, 0.0, 1.0 / 3))
