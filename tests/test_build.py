"""Build planning, the TensorRT-version decisions, resume, manifest records and the compat check.

TensorRT is replaced by a fake builder here; tests/test_trt_build.py drives the real builder and
runtime modules (against a fake ``tensorrt`` module on CPU, and the real one on a GPU).
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_folder import make_engine_folder

import snnet_export.runtime.trt as trt_pkg
import snnet_export.engine_build.trt_builder as trt_builder
from snnet_export import deps
from snnet_export.engine_build import (BuildPlan, build_engines, format_plan, plan_build, precision_flags,
                                store_record, up_to_date_reason)
from snnet_export.cli import cli
from snnet_export.engine_folder.engine_records import (EngineRecord, GpuEnv, check_engine_compatible, find_record,
                                                      incompatibility, parse_version, target_records)
from snnet_export.errors import BuildError, ConfigError, MissingDependencyError
from snnet_export.engine_folder.manifest import load_manifest
from snnet_export.engine_build.targets import load_target

ENV = GpuEnv(tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7")


@pytest.fixture()
def folder(tmp_path) -> Path:
    return make_engine_folder(tmp_path / "tiny")


# ---- TensorRT-version decisions ----------------------------------------------------------------

@pytest.mark.parametrize("version, precision, flags", [
    ("10.3.0.30", "fp32", ("FP16",)), ("10.13.0.35", "fp16", ("STRONGLY_TYPED",)), ("10.0.1", "fp16", ("STRONGLY_TYPED",)),
    ("11.0.0", "fp16", ()),
    ("11.4.1.2+cuda13", "fp16", ()),
])
def test_precision_flags(version, precision, flags):
    assert precision_flags(version, precision) == flags


def test_tensorrt11_refuses_fp32_exports():
    with pytest.raises(BuildError) as err:
        precision_flags("11.1.0.5", "fp32")
    msg = str(err.value)
    assert "TensorRT 11.1.0.5" in msg and "BuilderFlag.FP16 was removed" in msg and "--precision fp16" in msg


def test_old_tensorrt_is_refused():
    with pytest.raises(BuildError, match="8.6.1 is too old"):
        precision_flags("8.6.1", "fp16")


def test_parse_version():
    assert parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_version("10.13.0.35+cuda13") == (10, 13, 0, 35)
    assert parse_version("11.0") < parse_version("11.0.1")
    with pytest.raises(BuildError):
        parse_version("trt")


# ---- planning ----------------------------------------------------------------------------------

def test_plan_shapes_paths_and_flags(folder):
    plan = plan_build(folder, "dgpu")
    assert plan.tensorrt_assumed and plan.tensorrt_version == "10.0"
    assert [j.cfg_id for j in plan.jobs] == [0, 1, 2]
    # dgpu allows batch 64 but the export declares batch_max 16: the range is clamped
    assert (plan.min_shape, plan.opt_shape, plan.max_shape) == ((1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4))
    assert any("clamped" in n for n in plan.notes)
    assert plan.flags == ("FP16",) and plan.input_name == "input"
    assert plan.jobs[1].engine == folder / "trt" / "dgpu" / "stitch_001.engine"
    assert plan.jobs[1].opset == 18 and plan.jobs[1].onnx_sha256
    assert plan.timing_cache == folder / "trt" / "dgpu" / "timing.cache"
    assert plan.weights_file == folder / "weights.fp32.bin"


def test_plan_options(folder, tmp_path):
    plan = plan_build(folder, "jetson-orin", configs="0,2", strip_weights=True, timing_cache=tmp_path / "t.cache",
                      tensorrt_version="10.3.0.30")
    assert [j.cfg_id for j in plan.jobs] == [0, 2]
    assert plan.flags == ("FP16", "STRIP_PLAN", "REFIT_IDENTICAL")
    assert plan.max_shape == (16, 3, 4, 4) and plan.opt_shape == (4, 3, 4, 4)
    assert plan.timing_cache == tmp_path / "t.cache" and not plan.tensorrt_assumed
    assert [j.cfg_id for j in plan_build(folder, "dgpu", configs=[2, 1]).jobs] == [1, 2]


def test_plan_for_tensorrt11(tmp_path):
    fp16 = make_engine_folder(tmp_path / "fp16", precision="fp16")
    assert plan_build(fp16, "dgpu", tensorrt_version="11.0.0").flags == ()
    fp32 = make_engine_folder(tmp_path / "fp32")
    with pytest.raises(BuildError, match="--precision fp16"):
        plan_build(fp32, "dgpu", tensorrt_version="11.0.0")


def test_plan_refuses_older_tensorrt_than_target(folder):
    with pytest.raises(BuildError, match=r"jetson-thor needs TensorRT >= 10.13 \(JetPack 7.x\).*10.3.0"):
        plan_build(folder, "jetson-thor", tensorrt_version="10.3.0")


def test_plan_refuses_opset_above_target(tmp_path):
    folder = make_engine_folder(tmp_path / "new", opset=23)
    with pytest.raises(BuildError, match="opset 23 .* opset <= 20: re-export with `--opset 20`"):
        plan_build(folder, "jetson-orin")


def test_plan_refuses_strip_with_dla(folder, tmp_path):
    prof = tmp_path / "orin-dla.yaml"
    prof.write_text(textwrap.dedent("""
        platform: jetson
        batch: {min: 4, opt: 4, max: 4}
        dla: {core: 0, gpu_fallback: true}
    """))
    assert plan_build(folder, prof).flags == ("FP16", "GPU_FALLBACK")
    with pytest.raises(BuildError, match="drop --strip-weights"):
        plan_build(folder, prof, strip_weights=True)


def test_plan_refuses_strip_with_version_compatible(folder, tmp_path):
    prof = tmp_path / "vc.yaml"
    prof.write_text("version_compatible: true\n")
    assert plan_build(folder, prof).flags == ("FP16", "VERSION_COMPATIBLE")
    with pytest.raises(BuildError, match="lean runtime cannot refit an engine: drop --strip-weights"):
        plan_build(folder, prof, strip_weights=True)


def test_resume_key_includes_optimization_level_and_workspace(folder, fake_trt):
    build_engines(folder, "dgpu", configs="0")
    plan = plan_build(folder, "dgpu", configs="0", tensorrt_version=ENV.tensorrt_version)
    rec = find_record(load_manifest(folder), "dgpu", 0)
    assert (rec.optimization_level, rec.workspace_mib) == (3, 4096)
    assert load_manifest(folder)["engines"]["dgpu"]["stitches"][0]["builder"] == {
        "optimization_level": 3, "workspace_mib": 4096}
    assert up_to_date_reason(plan, plan.jobs[0], rec, ENV) is None
    for change in ({"optimization_level": 5}, {"workspace_mib": 1024}, {"workspace_mib": None}):
        other = replace(plan, target=replace(plan.target, **change))
        assert up_to_date_reason(other, plan.jobs[0], rec, ENV) == "build settings changed", change
    # a record written before the builder settings were stored is rebuilt once
    assert up_to_date_reason(plan, plan.jobs[0], replace(rec, optimization_level=None), ENV) == "build settings changed"


def test_trt_extra_is_pinned_to_tensorrt_10():
    """The [trt] extra resolves to TensorRT 10.x (FP32 and FP16 exports, JetPack 6/7), never 11.x."""
    import configparser

    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    reqs = {r.name: r for r in map(Requirement, cfg["options.extras_require"]["trt"].split())}
    trt = reqs["tensorrt"].specifier
    assert all(v in trt for v in ("10.0.1", "10.3.0", "10.13.0.35", "10.16.1.11"))
    assert not any(v in trt for v in ("11.0.0.114", "11.4.0.106", "8.6.1"))
    assert "12.6.0" in reqs["cuda-python"].specifier and "12.5.0" not in reqs["cuda-python"].specifier


def test_plan_config_and_file_errors(folder):
    with pytest.raises(ConfigError, match=r"id\(s\) 5 are not in this folder's exports .* \(it has 0-2\)"):
        plan_build(folder, "dgpu", configs="1,5")
    (folder / "stitch_001.onnx").unlink()
    with pytest.raises(BuildError, match="stitch_001.onnx .*is missing"):
        plan_build(folder, "dgpu")
    (folder / "weights.fp32.bin").unlink()
    with pytest.raises(BuildError, match="shared weight file .* is missing"):
        plan_build(folder, "dgpu", configs="0")


def test_format_plan(folder):
    text = format_plan(plan_build(folder, "jetson-orin", strip_weights=True), load_manifest(folder))
    for piece in ("target jetson-orin", "10.3 (assumed", "min [1, 3, 4, 4] opt [4, 3, 4, 4] max [16, 3, 4, 4]",
                  "FP16, STRIP_PLAN, REFIT_IDENTICAL", "timing.cache (new)", "trt/jetson-orin/stitch_002.engine",
                  "[to build]", "workspace 2048 MiB"):
        assert piece in text


# ---- records, resume and build orchestration (fake TensorRT) ----------------------------------

class FakeBuilder:
    """Stands in for trt.builder.TrtBuilder: the 'engine' is the ONNX bytes plus the flags."""

    calls: list[str] = []
    fail_on: str | None = None

    def __init__(self, timing_cache=None):
        self.timing_cache = timing_cache

    def build(self, onnx: Path, plan: BuildPlan) -> bytes:
        if onnx.name == FakeBuilder.fail_on:
            raise KeyboardInterrupt
        FakeBuilder.calls.append(onnx.name)
        return onnx.read_bytes() + ",".join(plan.flags).encode()

    def save_timing_cache(self) -> None:
        Path(self.timing_cache).write_bytes(b"cache")


@pytest.fixture()
def fake_trt(monkeypatch):
    env = {"value": ENV}
    monkeypatch.setattr(deps, "require", lambda name, purpose: None)
    monkeypatch.setattr(trt_pkg, "gpu_environment", lambda backend=None: env["value"])
    monkeypatch.setattr(trt_builder, "TrtBuilder", FakeBuilder)
    FakeBuilder.calls, FakeBuilder.fail_on = [], None
    return env


def test_build_records_and_resume(folder, fake_trt):
    result = build_engines(folder, "jetson-orin", strip_weights=True)
    assert FakeBuilder.calls == ["stitch_000.onnx", "stitch_001.onnx", "stitch_002.onnx"]
    assert [r.cfg_id for r in result.built] == [0, 1, 2] and result.skipped == ()
    manifest = json.loads((folder / "manifest.json").read_text())
    section = manifest["engines"]["jetson-orin"]
    assert section["target"]["name"] == "jetson-orin" and section["timing_cache"] == "trt/jetson-orin/timing.cache"
    rec = section["stitches"][1]
    assert rec["file"] == "trt/jetson-orin/stitch_001.engine" and rec["onnx"] == "stitch_001.onnx"
    assert rec["tensorrt_version"] == "10.3.0.30" and rec["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert rec["flags"] == ["FP16", "STRIP_PLAN", "REFIT_IDENTICAL"] and rec["stripped"] is True
    assert rec["size"] == (folder / rec["file"]).stat().st_size and len(rec["sha256"]) == 64
    assert rec["profile"] == {"input": "input", "min": [1, 3, 4, 4], "opt": [4, 3, 4, 4], "max": [16, 3, 4, 4]}
    assert rec["build_seconds"] >= 0 and rec["built"].endswith("Z")
    assert (folder / "trt" / "jetson-orin" / "timing.cache").read_bytes() == b"cache"

    FakeBuilder.calls = []
    again = build_engines(folder, "jetson-orin", strip_weights=True)
    assert FakeBuilder.calls == [] and again.skipped == (0, 1, 2)
    assert "[built with TensorRT 10.3.0.30 on Orin (sm 8.7)]" in format_plan(again.plan, load_manifest(folder))

    build_engines(folder, "jetson-orin", strip_weights=True, configs="1", force=True)
    assert FakeBuilder.calls == ["stitch_001.onnx"]


def test_build_rebuilds_what_changed(folder, fake_trt):
    build_engines(folder, "jetson-orin")
    FakeBuilder.calls = []
    (folder / "trt" / "jetson-orin" / "stitch_000.engine").write_bytes(b"corrupt")
    (folder / "trt" / "jetson-orin" / "stitch_002.engine").unlink()
    result = build_engines(folder, "jetson-orin")
    assert FakeBuilder.calls == ["stitch_000.onnx", "stitch_002.onnx"]
    assert result.reasons == {0: "engine file differs from its record", 2: "engine file missing"}
    assert result.skipped == (1,)

    FakeBuilder.calls = []
    result = build_engines(folder, "jetson-orin", strip_weights=True)  # settings changed -> all rebuilt
    assert len(FakeBuilder.calls) == 3 and set(result.reasons.values()) == {"build settings changed"}

    fake_trt["value"] = replace(ENV, tensorrt_version="10.3.0.31")
    FakeBuilder.calls = []
    result = build_engines(folder, "jetson-orin", strip_weights=True)
    assert len(FakeBuilder.calls) == 3
    assert result.reasons[0] == "recorded TensorRT 10.3.0.30, this machine has 10.3.0.31"

    fake_trt["value"] = replace(ENV, tensorrt_version="10.3.0.31", gpu_name="Orin Nano")
    result = build_engines(folder, "jetson-orin", strip_weights=True, configs="0")
    assert result.reasons[0] == "recorded for Orin (sm 8.7), this GPU is Orin Nano"


def test_interrupted_build_keeps_finished_engines(folder, fake_trt):
    FakeBuilder.fail_on = "stitch_001.onnx"
    with pytest.raises(KeyboardInterrupt):
        build_engines(folder, "dgpu")
    assert [r.cfg_id for r in target_records(load_manifest(folder), "dgpu")] == [0]
    assert not list((folder / "trt" / "dgpu").glob(".*.tmp"))
    FakeBuilder.fail_on, FakeBuilder.calls = None, []
    result = build_engines(folder, "dgpu")
    assert FakeBuilder.calls == ["stitch_001.onnx", "stitch_002.onnx"] and result.skipped == (0,)


def test_onnx_change_triggers_rebuild(folder, fake_trt):
    build_engines(folder, "dgpu", configs="0")
    plan = plan_build(folder, "dgpu", configs="0", tensorrt_version=ENV.tensorrt_version)
    rec = find_record(load_manifest(folder), "dgpu", 0)
    assert rec is not None and up_to_date_reason(plan, plan.jobs[0], rec, ENV) is None
    job = replace(plan.jobs[0], onnx_sha256="0" * 64)
    assert up_to_date_reason(plan, job, rec, ENV) == "the ONNX export changed"
    # new weights leave the ONNX files byte-identical (external data): the weight file's hash decides
    assert rec.weights_sha256 == load_manifest(folder)["weights"]["sha256"]
    new_weights = replace(plan, weights_sha256="1" * 64)
    assert up_to_date_reason(new_weights, plan.jobs[0], rec, ENV) == "the shared weight file changed"
    assert up_to_date_reason(plan, plan.jobs[0], None, ENV) == "not built yet"


def test_record_round_trip_and_store():
    rec = EngineRecord(cfg_id=4, file="trt/dgpu/stitch_004.engine", onnx="stitch_004.onnx", sha256="a" * 64,
                       size=10, tensorrt_version="10.13.0.35", gpu_name="NVIDIA L4", compute_capability="8.9",
                       flags=("FP16",), min_shape=(1, 3, 4, 4), opt_shape=(8, 3, 4, 4), max_shape=(16, 3, 4, 4))
    assert EngineRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    manifest: dict = {"engines": {}}
    target = load_target("dgpu")
    store_record(manifest, target, "trt/dgpu/timing.cache", rec)
    store_record(manifest, target, "trt/dgpu/timing.cache", replace(rec, cfg_id=1))
    store_record(manifest, target, "trt/dgpu/timing.cache", replace(rec, size=99))
    assert [r["id"] for r in manifest["engines"]["dgpu"]["stitches"]] == [1, 4]
    assert find_record(manifest, "dgpu", 4).size == 99 and find_record(manifest, "dgpu", 7) is None
    # an incomplete record is refused once, at the manifest door: tests/test_one_door.py


# ---- load-time compatibility ---------------------------------------------------------------------

def _rec(**kw) -> EngineRecord:
    base = dict(cfg_id=0, file="trt/x/stitch_000.engine", onnx="stitch_000.onnx", sha256="0" * 64, size=1,
                tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7")
    return EngineRecord(**{**base, **kw})


def test_compatibility_refusals():
    assert incompatibility(_rec(), ENV) is None
    with pytest.raises(BuildError) as err:
        check_engine_compatible(_rec(tensorrt_version="10.13.0.35").to_dict(), ENV, "e.engine")
    assert "cannot load engine e.engine: it was built by TensorRT 10.13.0.35 but this machine has TensorRT " \
           "10.3.0.30" in str(err.value) and "snnet-export build" in str(err.value)
    thor = GpuEnv("10.3.0.30", "Thor", "11.0")
    assert "built for compute capability 8.7 (Orin)" in incompatibility(_rec(), thor)
    nano = GpuEnv("10.3.0.30", "Orin Nano", "8.7")
    assert "built on a Orin and this GPU is a Orin Nano" in incompatibility(_rec(), nano)
    assert incompatibility(_rec(hardware_compatibility="same-compute-capability"), nano) is None
    assert incompatibility(_rec(hardware_compatibility="same-compute-capability"), thor) is not None


def test_compatibility_levels():
    ampere = _rec(hardware_compatibility="ampere+", gpu_name="A100", compute_capability="8.0")
    assert incompatibility(ampere, GpuEnv("10.3.0.30", "H100", "9.0")) is None
    assert "Ampere or newer" in incompatibility(ampere, GpuEnv("10.3.0.30", "T4", "7.5"))
    vc = _rec(version_compatible=True)
    assert incompatibility(vc, replace(ENV, tensorrt_version="10.7.0")) is None
    assert "newer than this machine's TensorRT 10.2.0" in incompatibility(vc, replace(ENV, tensorrt_version="10.2.0"))


# ---- CLI -------------------------------------------------------------------------------------------

def test_cli_dry_run(folder):
    res = CliRunner().invoke(cli, ["build", str(folder), "--target", "jetson-thor", "--dry-run",
                                   "--configs", "0-1", "--timing-cache", str(folder / "my.cache")])
    assert res.exit_code == 0, res.output
    assert "target jetson-thor" in res.output and "stitches (2):" in res.output
    assert "my.cache (new)" in res.output and "trt/jetson-thor/stitch_001.engine" in res.output
    assert f"check {folder} for target jetson-thor (TensorRT 10.13): 2 graph(s), 0 error(s)" in res.output
    assert not (folder / "trt").exists()


def test_cli_errors_are_one_line(folder):
    res = CliRunner().invoke(cli, ["build", str(folder), "--target", "nope", "--dry-run"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "unknown target 'nope'" in res.output


@pytest.mark.skipif(deps.is_tensorrt_available(), reason="TensorRT is installed here")
def test_cli_build_without_tensorrt(folder):
    res = CliRunner().invoke(cli, ["build", str(folder), "--target", "dgpu"])
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "needs NVIDIA TensorRT" in res.output and "pip install" in res.output
    with pytest.raises(MissingDependencyError):
        from snnet_export.runtime.trt.runner import TrtEngine

        TrtEngine(folder / "trt" / "dgpu" / "stitch_000.engine")
