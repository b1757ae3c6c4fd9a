"""Tampered manifests and profiles: every field the audit broke is refused at load time, as one line."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from snnet_export.engine_folder.manifest import load_manifest, manifest_path
from snnet_export.engine_folder.profile import load_profiles, read_profile
from snnet_export.errors import BenchError, VerifyError


def _tamper(folder: Path, edit) -> None:
    data = json.loads(manifest_path(folder).read_text())
    edit(data)
    manifest_path(folder).write_text(json.dumps(data))


def _delete(*keys):
    def edit(m):
        obj = m
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return edit


def _set(value, *keys):
    def edit(m):
        obj = m
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return edit


MANIFEST_CASES = {
    "missing configs": (_delete("configs"), "configs: missing"),
    "configs null": (_set(None, "configs"), "configs: must be a list"),
    "missing weights": (_delete("weights"), "weights: missing"),
    "missing tensors": (_delete("weights", "tensors"), "weights.tensors: missing"),
    "missing onnx": (_delete("configs", 0, "onnx"), "configs[0].onnx: missing"),
    "missing initializers": (_delete("configs", 0, "initializers"), "configs[0].initializers: missing"),
    "duplicate id": (lambda m: m["configs"].append(dict(m["configs"][0])), "id 0 appears twice"),
    "tensor shape changed": (lambda m: m["weights"]["tensors"][0]["shape"].append(2), "weights.tensors[0].shape"),
    "acc1 high": (_set("high", "configs", 0, "accuracy", "acc1"), "configs[0].accuracy.acc1"),
    "acc1 nan": (_set(math.nan, "configs", 0, "accuracy", "acc1"), "configs[0].accuracy.acc1"),
    "onnx absolute": (_set("/etc/passwd", "configs", 0, "onnx"), "configs[0].onnx"),
    "onnx dotdot": (_set("../elsewhere/stitch_000.onnx", "configs", 0, "onnx"), "configs[0].onnx"),
    "weight file escape": (_set("../weights.fp32.bin", "weights", "file"), "weights.file"),
    "tensor index out of range": (lambda m: m["configs"][0]["initializers"][0].__setitem__(1, 10**6),
                                  "configs[0].initializers[0][1]"),
    "tensor past end": (_set(10**12, "weights", "tensors", 0, "offset"), "weights.tensors[0]"),
    "negative size": (_set(-1, "weights", "size"), "weights.size"),
    "num_classes mismatch": (_set(7, "num_classes"), "outputs[0].shape"),
    "bool as string": (_set("yes", "configs", 0, "verified", "ok"), "configs[0].verified.ok"),
    "engine path escape": (_set({"dgpu": {"stitches": [{"id": 0, "file": "/tmp/evil.engine", "onnx": "stitch_000.onnx",
                                                         "size": 1}]}}, "engines"), "engines.dgpu.stitches[0].file"),
    "engine dotdot": (_set({"dgpu": {"stitches": [{"id": 0, "file": "trt/../../x.engine", "onnx": "stitch_000.onnx",
                                                    "size": 1}]}}, "engines"), "engines.dgpu.stitches[0].file"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_tampered_manifest_is_refused_naming_the_field(folder, case):
    edit, field = MANIFEST_CASES[case]
    load_manifest(folder)  # the untouched copy loads
    _tamper(folder, edit)
    with pytest.raises(VerifyError) as info:
        load_manifest(folder)
    msg = str(info.value)
    assert "manifest.json" in msg and field in msg and "\n" not in msg


def test_symlinked_graph_pointing_outside_is_refused(folder, tmp_path):
    outside = tmp_path / "outside.onnx"
    (folder / "stitch_000.onnx").rename(outside)
    os.symlink(outside, folder / "stitch_000.onnx")
    with pytest.raises(VerifyError, match=r"configs\[0\].onnx.*symbolic link"):
        load_manifest(folder)


@pytest.mark.parametrize("payload", [b"\x00\xff\xfe binary", b"{not json", b"[]", b'{"schema": 1}'])
def test_unreadable_manifest_is_one_line(folder, payload):
    manifest_path(folder).write_bytes(payload)
    with pytest.raises(VerifyError) as info:
        load_manifest(folder)
    assert "\n" not in str(info.value)


def _profile_file(folder: Path) -> Path:
    return next(folder.glob("profile.*.json"))


def _tamper_profile(folder: Path, edit) -> Path:
    path = _profile_file(folder)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


PROFILE_CASES = {
    "nan throughput": (lambda p: p["stitches"][0].__setitem__("throughput", math.nan), "stitches[0].throughput"),
    "inf throughput": (lambda p: p["stitches"][-1].__setitem__("throughput", math.inf), "throughput"),
    "negative batch": (lambda p: p.__setitem__("batches", [-1, 4]), "batches[0]"),
    "string throughput": (lambda p: p["stitches"][0].__setitem__("throughput", "fast"), "stitches[0].throughput"),
    "missing latency": (lambda p: p["stitches"][0].pop("latency_ms"), "stitches[0].latency_ms"),
    "missing p90": (lambda p: p["stitches"][0]["latency_ms"].pop("p90"), "latency_ms.p90"),
    "unmeasured batch": (lambda p: p["stitches"][0].__setitem__("batch", 3), "stitches[0].batch"),
    "duplicate record": (lambda p: p["stitches"].append(dict(p["stitches"][0])), "appears twice"),
    "missing stitches": (lambda p: p.pop("stitches"), "stitches: missing"),
    "batches empty": (lambda p: p.__setitem__("batches", []), "batches: is empty"),
    "tie group without itself": (lambda p: p["stitches"][0].__setitem__("tie_group", [987654]),
                                 "stitches[0].tie_group: must include"),
    "tie group of strings": (lambda p: p["stitches"][0].__setitem__("tie_group", ["a"]), "stitches[0].tie_group[0]"),
    "p50_ci not a pair": (lambda p: p["stitches"][0]["latency_ms"].__setitem__("p50_ci", [1.0]), "latency_ms.p50_ci"),
    "p50_ci nan": (lambda p: p["stitches"][0]["latency_ms"].__setitem__("p50_ci", [1.0, math.nan]),
                   "latency_ms.p50_ci[1]"),
    "resolved not a bool": (lambda p: p["stitches"][0].__setitem__("resolved", "yes"), "stitches[0].resolved"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_tampered_profile_is_refused_naming_the_field(folder, case):
    edit, field = PROFILE_CASES[case]
    path = _tamper_profile(folder, edit)
    with pytest.raises(BenchError) as info:
        read_profile(path)
    assert path.name in str(info.value) and field in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BenchError):  # the folder's loader says the same: not "no measured profile"
        load_profiles(folder)


def test_invalid_json_profile_is_reported_not_skipped(folder):
    _profile_file(folder).write_bytes(b"\x00\x01 not json")
    with pytest.raises(BenchError, match="not readable JSON"):
        load_profiles(folder)


def test_nan_profile_cannot_make_a_stitch_meet_every_budget(folder):
    """The audit's silent wrong choice: NaN throughput met every budget. Now the Selector refuses it."""
    from snnet_export.runtime import Selector

    _tamper_profile(folder, lambda p: [r.__setitem__("throughput", math.nan) for r in p["stitches"] if r["id"] == 70])
    with pytest.raises(BenchError, match="throughput"):
        Selector(folder, backend="ort", resident="none")


def test_tensor_reshaped_to_the_same_byte_count_is_caught_by_verify(folder):
    """A shape edit that keeps the length passes the schema; verify compares it with the graph."""
    from snnet_export.engine_folder.integrity import verify_folder

    def reshape(m):
        t = next(t for t in m["weights"]["tensors"] if len(t["shape"]) == 2)
        t["shape"] = [t["shape"][1], t["shape"][0]] if t["shape"][0] != t["shape"][1] else [1, t["shape"][0] ** 2]

    _tamper(folder, reshape)
    load_manifest(folder)
    with pytest.raises(VerifyError, match="in the graph but"):
        verify_folder(folder, check_graphs=False)
