"""``profile_from_engines`` and ``snnet-export bench`` on a few exported tiny stitches.

These tests assert behaviour (schema, plausible numbers, errors), never speed: few runs each.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnet_export.bench.measure import BenchError, parse_batches, profile_from_engines
from snnet_export.bench.timing import latency_stats, time_interleaved
from snnet_export.deps import is_tensorrt_available
from snnet_export.errors import ConfigError, MissingDependencyError, SNNetExportError
from snnet_export.engine_folder.profile import PROFILE_SCHEMA, device_name, find_profile, pareto_front, profile_path

IDS = [0, 1, 2, 3, 40]
FAST = dict(warmup=1, runs=3, min_seconds=0.0, progress=False)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from snnet_export.export.stitches import export_stitches

    out = tmp_path_factory.mktemp("bench") / "tiny"
    export_stitches("tiny", "random", out, configs="0,1,2,3,40", progress=False)
    return out


@pytest.fixture(scope="module")
def measured(tiny_folder) -> dict:
    # one thread: two-thread OpenMP crawls when the test machine is oversubscribed
    return profile_from_engines(tiny_folder, batches=(1, 4), threads=1, baseline_torch=True, **FAST)


def test_profile_file_has_the_schema(tiny_folder, measured):
    path = profile_path(tiny_folder, device_name("ort"), "ort")
    on_disk = json.loads(path.read_text())
    assert on_disk == measured
    assert (measured["schema"], measured["version"], measured["backend"]) == (PROFILE_SCHEMA, 1, "ort")
    assert measured["device"] == device_name("ort") and measured["precision"] == "fp32"
    assert measured["batches"] == [1, 4] and measured["ort_mode"] == "fused"
    assert sorted((r["id"], r["batch"]) for r in measured["stitches"]) == [(i, b) for i in IDS for b in (1, 4)]
    env = measured["environment"]
    for key in ("cpu", "threads", "onnxruntime", "numpy", "python", "precision", "ort", "load_average", "timing"):
        assert key in env, key
    assert env["threads"] == 1 and env["ort"]["intra_op_num_threads"] == 1 and env["ort"]["prepacking"] is False
    assert find_profile(tiny_folder, "ort")["stitches"] == measured["stitches"]


def test_numbers_are_plausible(measured):
    for r in measured["stitches"] + measured["baseline"]["torch"]:
        lat = r["latency_ms"]
        assert r["throughput"] > 0 and r["runs"] >= 3
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["mean"] > 0
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / lat["p50"], rel=1e-3)


def test_torch_baseline_recorded(measured):
    base = measured["baseline"]["torch"]
    assert sorted((r["id"], r["batch"]) for r in base) == sorted((r["id"], r["batch"]) for r in measured["stitches"])
    env = measured["environment"]
    assert env["torch"] and env["torch_threads"] == 1 and env["torch_weights"] == "random (seed 0)"


def test_fast_mode_subset_without_writing(tiny_folder, measured):
    before = profile_path(tiny_folder, device_name("ort"), "ort").stat().st_mtime_ns
    prof = profile_from_engines(tiny_folder, batches="2", configs="0,3", ort_mode="fast", write=False, threads=1,
                                spinning=False, **FAST)
    assert [(r["id"], r["batch"]) for r in prof["stitches"]] == [(0, 2), (3, 2)]
    assert prof["ort_mode"] == "fast" and prof["environment"]["ort"]["fused_attention"] is True
    assert prof["environment"]["ort"]["allow_spinning"] == 0 and prof["environment"]["ort"]["prepacking"] is True
    assert "baseline" not in prof
    assert profile_path(tiny_folder, device_name("ort"), "ort").stat().st_mtime_ns == before


def test_reuse_skips_measuring(tiny_folder, measured):
    again = profile_from_engines(tiny_folder, batches=(1,), configs="0,3", threads=1, reuse=True, **FAST)
    assert again["created"] == measured["created"]


def test_report_frontier_matches_measured_data(tiny_folder, measured):
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.bench.report import report_from_profile

    path = report_from_profile(tiny_folder, batch=4)
    flops = {e["id"]: e["flops"] / 1e9 for e in load_manifest(tiny_folder)["configs"]}
    pts = [(r["id"], r["throughput"], flops[r["id"]]) for r in measured["stitches"] if r["batch"] == 4]
    table = path.read_text().split("## Pareto frontier")[1].split("\n## ")[0]
    ids = [int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and "---" not in line
           and not line.startswith("| id")]
    from snnet_export.engine_folder.profile import tie_groups

    assert ids == pareto_front(pts, tie_groups(measured, 4))  # ties as the report draws them
    assert (tiny_folder / "throughput_vs_top1.png").stat().st_size > 0


def test_fused_graph_matches_and_keeps_shared_weights(tiny_folder):
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.runtime.ort.runner import OrtRunner, ort_session
    from snnet_export.runtime.ort.fused import fast_graph
    from snnet_export.engine_folder.weight_file import WeightFile

    m = load_manifest(tiny_folder)
    weights = WeightFile(tiny_folder, m["weights"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    for entry in m["configs"]:
        ref = OrtRunner(ort_session(tiny_folder, entry, weights))(x)
        fast = ort_session(tiny_folder, entry, weights, fast=True, prepack=True)
        np.testing.assert_allclose(OrtRunner(fast)(x), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
        import onnx

        graph = onnx.load_from_string(fast_graph(tiny_folder / entry["onnx"])[0]).graph
        ops = [n.op_type for n in graph.node]
        assert ops.count("Attention") == fast._snnet_fused == (12 if entry["position"] is None else 13)
        assert "Softmax" not in ops
        original = onnx.load(tiny_folder / entry["onnx"], load_external_data=False).graph
        assert {i.name for i in graph.initializer} <= {i.name for i in original.initializer}  # nothing new
        external = {i.name for i in graph.initializer if i.external_data}
        assert external == {name for name, _ in entry["initializers"]}  # all from the shared file


def test_time_interleaved_round_robin():
    calls = []
    lat = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           warmup=1, runs=10, min_seconds=0.0)
    assert len(lat["a"]) >= 10 and len(lat["b"]) >= 10
    timed = calls[2:]
    assert {"a", "b"} <= set(timed[:4])  # short rounds in turn, not all of a then all of b


def test_latency_stats():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004], batch=8)
    assert stats["latency_ms"]["p50"] == pytest.approx(2.5) and stats["throughput"] == pytest.approx(3200)


@pytest.mark.parametrize("bad", ["", "1,x", "0", "-2", "1;2"])
def test_bad_batches(bad):
    with pytest.raises(BenchError, match="bad batch list"):
        parse_batches(bad)


def test_bad_requests(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="id\\(s\\) 5 are not in the exports of"):
        profile_from_engines(tiny_folder, configs="5", **FAST)
    with pytest.raises(BenchError, match="unknown backend"):
        profile_from_engines(tiny_folder, backend="cuda", **FAST)
    with pytest.raises(SNNetExportError, match="manifest.json is missing"):
        profile_from_engines(tmp_path, **FAST)
    with pytest.raises(BenchError, match="unknown ONNX Runtime mode"):
        profile_from_engines(tiny_folder, ort_mode="turbo", **FAST)


@pytest.mark.skipif(is_tensorrt_available(), reason="TensorRT is installed")
def test_trt_backend_without_tensorrt(tiny_folder):
    with pytest.raises(MissingDependencyError, match="TensorRT"):
        profile_from_engines(tiny_folder, backend="trt", **FAST)


def test_measurement_loop_imports_no_torch(tiny_folder):
    code = (f"import sys; from snnet_export.bench.measure import profile_from_engines as p; "
            f"p({str(tiny_folder)!r}, batches=1, configs='0', warmup=0, runs=1, min_seconds=0, write=False, "
            f"progress=False, ort_mode='fast'); "
            "print(sorted(m for m in ('torch', 'timm', 'click', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_bench(tiny_folder, measured):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(tiny_folder), "--batch", "1", "--configs", "0,3", "--runs", "2",
                                   "--warmup", "0", "--min-seconds", "0", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "img/s" in res.output and "profile:" in res.output


@pytest.mark.parametrize("args, message", [
    (["--batch", "1,x"], "bad batch list"),
    (["--configs", "7"], "are not in the exports of"),
])
def test_cli_bench_errors(tiny_folder, args, message):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(tiny_folder), *args])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_cli_bench_missing_folder(tmp_path):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not an engine folder" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


# ---- spread, machine state, efficiency, merge ---------------------------------------------------

def test_records_carry_ci_efficiency_and_machine_state(measured):
    env = measured["environment"]
    assert env["timing"]["rounds"] == 5 and env["matmul_peak"]["gflops"] > 0
    assert env["matmul_peak"]["threads"] == 1 and set(env["cpu_mhz"]) == {"before", "after"}
    assert len(env["load_average"]["before"]) == 3
    for r in measured["stitches"]:
        lo, hi = r["latency_ms"]["ci95"]
        assert lo <= r["latency_ms"]["p50"] <= hi and r["rel_ci"] == pytest.approx((hi - lo) / r["latency_ms"]["p50"],
                                                                                  abs=1e-3)
        assert r["throughput_ci95"][0] <= r["throughput"] <= r["throughput_ci95"][1]
        eff = r["efficiency"]
        assert eff["gflops"] > 0 and eff["of_peak"] == pytest.approx(eff["gflops"] / env["matmul_peak"]["gflops"],
                                                                    rel=1e-2)
    q = measured["quality"]["batches"]
    assert set(q) == {"1", "4"} and all(isinstance(v["rankable"], bool) for v in q.values())


def test_efficiency_is_twice_macs_over_latency(tiny_folder, measured):
    from snnet_export.engine_folder.manifest import load_manifest

    macs = {e["id"]: e["flops"] for e in load_manifest(tiny_folder)["configs"]}
    for r in measured["stitches"]:
        want = 2 * macs[r["id"]] * r["batch"] / (r["latency_ms"]["p50"] / 1e3) / 1e9
        assert r["efficiency"]["gflops"] == pytest.approx(want, rel=1e-2)


@pytest.fixture()
def folder_copy(tiny_folder, measured, tmp_path):
    import shutil

    return Path(shutil.copytree(tiny_folder, tmp_path / "copy"))


def test_rebench_of_a_subset_merges_into_the_profile(folder_copy, measured):
    path = profile_path(folder_copy, device_name("ort"), "ort")
    before = json.loads(path.read_text())
    merged = profile_from_engines(folder_copy, batches="1,2", configs="3", threads=1, peak=False, **FAST)
    assert json.loads(path.read_text()) == merged
    keys = sorted((r["id"], r["batch"]) for r in merged["stitches"])
    assert keys == sorted([(i, b) for i in IDS for b in (1, 4)] + [(3, 2)])
    old = {(r["id"], r["batch"]): r for r in before["stitches"]}
    judged = ("resolved", "tie_group")  # judged against the neighbours again, stitch 3 among them
    for r in merged["stitches"]:
        if r["id"] != 3:
            strip = lambda d: {k: v for k, v in d.items() if k not in judged}
            assert strip(r) == strip(old[r["id"], r["batch"]])  # the measurement is untouched
            assert set(judged) <= set(r)
    sessions = before.get("sessions", [{}])
    assert merged["batches"] == [1, 2, 4] and len(merged["sessions"]) == len(sessions) + 1
    assert merged["sessions"][-1]["ids"] == [3] and merged["sessions"][0]["ids"] == IDS
    assert len(merged["baseline"]["torch"]) == len(measured["baseline"]["torch"])  # kept


@pytest.mark.parametrize("kwargs, reason", [
    (dict(ort_mode="shared"), "ort_mode 'fused' (existing) vs 'shared' (this run)"),
    (dict(threads=2), "threads 1 (existing) vs 2 (this run)"),
    (dict(spinning=False), "ort"),
])
def test_incompatible_rebench_is_refused_with_the_reason(folder_copy, kwargs, reason):
    path = profile_path(folder_copy, device_name("ort"), "ort")
    before = path.read_text()
    args = dict(dict(threads=1, peak=False, **FAST), **kwargs)
    with pytest.raises(BenchError, match="cannot merge") as err:
        profile_from_engines(folder_copy, batches=1, configs="0", **args)
    assert reason in str(err.value) and "--replace" in str(err.value)
    assert path.read_text() == before
    fresh = profile_from_engines(folder_copy, batches=1, configs="0", replace=True, **args)
    assert [(r["id"], r["batch"]) for r in json.loads(path.read_text())["stitches"]] == [(0, 1)]
    assert "sessions" not in fresh


def test_noisy_profile_warns_and_marks_unrankable(folder_copy, caplog, monkeypatch):
    import logging
    from snnet_export.bench import timing

    real = timing.time_interleaved

    seen: dict[int, int] = {}  # timed runs so far per stitch runner, across calls (a round may time just one)

    def noisy(fns, *args, **kw):  # every other run of each stitch 3x slower: a wide CI
        out = real(fns, *args, **kw)
        slowed = {}
        for k, vals in out.items():
            key = id(getattr(fns[k], "func", fns[k]))
            slowed[k] = [v * (3.0 if (seen.get(key, 0) + n) % 2 else 1.0) for n, v in enumerate(vals)]
            seen[key] = seen.get(key, 0) + len(vals)
        return slowed

    monkeypatch.setattr(timing, "time_interleaved", noisy)  # what bench.sampling calls
    with caplog.at_level(logging.WARNING):
        prof = profile_from_engines(folder_copy, batches=1, configs="0,1", threads=1, peak=False,
                                    write=False, ci_target=None, **FAST)  # first pass only: stays noisy
    q = prof["quality"]["batches"]["1"]
    assert q["rankable"] is False and q["noisy"] == [0, 1]  # 5 runs of 1x,3x,1x,3x,1x: CI the whole range
    assert "wider than 10%" in caplog.text or "ranking is not resolved" in caplog.text  # either unresolved warning
    resolved = [r["resolved"] for r in prof["stitches"]]  # wide CIs: resolved only if still separated
    assert ("ranking is not resolved" in caplog.text) == (not all(resolved))


def test_cli_bench_refusal_is_one_line(folder_copy):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["bench", str(folder_copy), "--batch", "1", "--configs", "0", "--runs", "1",
                                   "--warmup", "0", "--min-seconds", "0", "--threads", "2"])
    assert res.exit_code == 1 and "cannot merge" in res.output and "Traceback" not in res.output
