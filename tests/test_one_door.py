"""One door per kind of input: a malformed profile or engine record is refused once, by its loader.

Every reader of a profile (``select``, the Selector, bench's merge, the report) and of an engine
record (build planning, ``check``, the TensorRT loader, the Selector) goes through the one loader
of that file (:func:`~snnet_export.engine_folder.profile.read_profile`,
:func:`~snnet_export.engine_folder.manifest.load_manifest`), so each refuses a bad file with the
very message the loader gives: no second set of rules, no reader that lets it through and fails
later with a KeyError or a traceback.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_folder import make_engine_folder, write_profile

from snnet_export.errors import BenchError, SNNetExportError, VerifyError

SPEED = {0: 100.0, 1: 200.0, 2: 300.0}


def _refusal(fn, error=SNNetExportError) -> str:
    with pytest.raises(error) as info:
        fn()
    return str(info.value)


def _cli_error(*args: str) -> str:
    from snnet_export.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0][len("Error: "):]


# ---- profiles --------------------------------------------------------------------------------------

PROFILE_CASES = {
    "nan throughput": (lambda p: p["stitches"][0].__setitem__("throughput", math.nan), "stitches[0].throughput"),
    "ci not a pair": (lambda p: p["stitches"][1].__setitem__("throughput_ci95", "wide"),
                      "stitches[1].throughput_ci95: must be [low, high]"),
    "efficiency text": (lambda p: p["stitches"][0].__setitem__("efficiency", {"of_peak": "most"}),
                        "stitches[0].efficiency.of_peak"),
    "environment list": (lambda p: p.__setitem__("environment", []), "environment: must be an object"),
    "quality noisy ids": (lambda p: p.__setitem__("quality", {"batches": {"1": {"noisy": ["x"]}}}),
                          "quality.batches.1.noisy[0]"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_a_bad_profile_is_refused_with_one_message_by_every_reader(tmp_path, case):
    from snnet_export.bench.merge import finish_profile
    from snnet_export.bench.report import report_from_profile
    from snnet_export.engine_folder.profile import load_profiles, read_profile
    from snnet_export.runtime import Selector

    folder = make_engine_folder(tmp_path / "f")
    good = write_profile(folder, SPEED)
    path = next(folder.glob("profile.*.json"))
    bad = json.loads(path.read_text())
    edit, field = PROFILE_CASES[case]
    edit(bad)
    path.write_text(json.dumps(bad))

    want = _refusal(lambda: read_profile(path), BenchError)
    assert want.startswith(f"{path}: ") and field in want
    assert _refusal(lambda: load_profiles(folder), BenchError) == want
    assert _refusal(lambda: Selector(folder, backend="ort", resident="none"), BenchError) == want
    assert _refusal(lambda: finish_profile(folder, dict(good), write=True, replace=False), BenchError) == want
    assert _refusal(lambda: report_from_profile(folder), BenchError) == want
    assert _cli_error("select", str(folder), "--min-throughput", "10", "--backend", "ort") == want


def test_every_field_a_reader_uses_passes_the_door_when_well_formed(tmp_path):
    """The fields the checks above refuse are accepted when well formed (the door is not a wall)."""
    from snnet_export.bench.merge import ranking_quality
    from snnet_export.engine_folder.profile import read_profile
    from snnet_export.runtime import Selector

    folder = make_engine_folder(tmp_path / "f")
    prof = write_profile(folder, SPEED)
    for r in prof["stitches"]:
        p50 = r["latency_ms"]["p50"]
        r["latency_ms"]["ci95"] = [p50 * 0.9, p50 * 1.1]
        r["throughput_ci95"] = [r["throughput"] * 0.9, r["throughput"] * 1.1]
        r["rel_ci"], r["efficiency"] = 0.2, {"gflops": 1.5, "of_peak": 0.25}
    prof.update(quality=ranking_quality(prof), sessions=[{"created": "x", "ids": [0, 1, 2]}],
                environment={"threads": 1}, ort_mode="shared")
    path = next(folder.glob("profile.*.json"))
    path.write_text(json.dumps(prof))
    assert read_profile(path)["quality"]["batches"]["1"]["noisy"] == [0, 1, 2]
    assert Selector(folder, backend="ort", resident="none").profile["stitches"] == prof["stitches"]


# ---- engine records --------------------------------------------------------------------------------

def _record(cfg_id: int) -> dict:
    """An engine record as `snnet-export build` writes it (engine_records.EngineRecord.to_dict)."""
    from snnet_export.engine_folder.engine_records import EngineRecord

    return EngineRecord(cfg_id=cfg_id, file=f"trt/dgpu/stitch_{cfg_id:03d}.engine", onnx=f"stitch_{cfg_id:03d}.onnx",
                        sha256="a" * 64, size=10, tensorrt_version="10.13.0.35", gpu_name="NVIDIA L4",
                        compute_capability="8.9", flags=("FP16",), min_shape=(1, 3, 4, 4),
                        opt_shape=(8, 3, 4, 4), max_shape=(16, 3, 4, 4)).to_dict()


RECORD_CASES = {
    "no gpu": (lambda r: r.pop("gpu"), "engines.dgpu.stitches[1].gpu: missing"),
    "no engine hash": (lambda r: r.pop("sha256"), "engines.dgpu.stitches[1].sha256: missing"),
    "bad version": (lambda r: r.__setitem__("tensorrt_version", "ten"), "stitches[1].tensorrt_version"),
    "flags text": (lambda r: r.__setitem__("flags", "FP16"), "stitches[1].flags: must be a list"),
    "negative dla core": (lambda r: r.__setitem__("dla_core", -1), "stitches[1].dla_core"),
    "shape text": (lambda r: r["profile"].__setitem__("max", ["16"]), "stitches[1].profile.max[0]"),
    "level text": (lambda r: r["builder"].__setitem__("optimization_level", "3"),
                   "stitches[1].builder.optimization_level"),
    "compatibility": (lambda r: r.__setitem__("hardware_compatibility", "all"), "stitches[1].hardware_compatibility"),
}


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_a_bad_engine_record_is_refused_with_one_message_by_every_reader(tmp_path, case):
    from snnet_export.engine_build import plan_build
    from snnet_export.engine_build.check import check_folder
    from snnet_export.engine_folder.engine_records import EngineRecord, target_records
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.runtime import Selector
    from snnet_export.runtime.trt.runner import load_engines

    folder = make_engine_folder(tmp_path / "f")
    write_profile(folder, SPEED)
    manifest = json.loads((folder / "manifest.json").read_text())
    records = [_record(0), _record(1)]
    manifest["engines"] = {"dgpu": {"stitches": records}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    good = load_manifest(folder)  # well formed: every record goes through the door and is read back
    assert [EngineRecord.from_dict(r).to_dict() for r in records] == records == [
        r.to_dict() for r in target_records(good, "dgpu")]

    edit, field = RECORD_CASES[case]
    edit(records[1])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    want = _refusal(lambda: load_manifest(folder), VerifyError)
    assert want.startswith(f"{Path(folder) / 'manifest.json'}: ") and field in want
    assert _refusal(lambda: plan_build(folder, "dgpu", tensorrt_version="10.13.0.35")) == want
    assert _refusal(lambda: check_folder(folder, "dgpu", tensorrt_version="10.13.0.35")) == want
    assert _refusal(lambda: load_engines(folder, "dgpu")) == want
    assert _refusal(lambda: Selector(folder, resident="none")) == want  # backend auto reads the records
    assert _cli_error("select", str(folder), "--min-throughput", "10") == want


# ---- one field checker for every YAML/JSON door ----------------------------------------------------

def test_target_family_and_manifest_judge_a_field_by_one_rule(tmp_path):
    """A string where a boolean belongs: the target profile, family spec and manifest doors refuse it
    with the same rule and message form (snnet_export.fields.Fields), each with its own error class."""
    from snnet_export.engine_build.targets import target_from_dict
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.errors import FamilyError, TargetError
    from snnet_export.model.family import family_from_dict

    rule = "must be true or false, got 'yes'"
    got = _refusal(lambda: target_from_dict({"name": "x", "version_compatible": "yes"}, source="t.yaml"),
                   TargetError)
    assert got == f"t.yaml: version_compatible: {rule}"
    family = {"anchors": [{"model": "vit_tiny_patch16_224"}, {"model": "vit_small_patch16_224"}],
              "stitching": {"nearest": "yes"}}
    assert _refusal(lambda: family_from_dict(family, source="f.yaml"), FamilyError) == \
        f"f.yaml: stitching.nearest: {rule}"
    folder = make_engine_folder(tmp_path / "f")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["engines"] = {"dgpu": {"stitches": [{**_record(0), "stripped": "yes"}]}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert _refusal(lambda: load_manifest(folder), VerifyError) == \
        f"{folder / 'manifest.json'}: engines.dgpu.stitches[0].stripped: {rule}"
