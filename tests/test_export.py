"""Export to ONNX with one shared weight file: every tiny stitch, dedup, FP16, integrity, resume."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import snnet_export.export.stitches as export_mod
from snnet_export.cli import cli
from snnet_export.errors import ExportError, VerifyError
from snnet_export.engine_folder.lock import LOCK_FILE
from snnet_export.export.stitches import export_stitches
from snnet_export.engine_folder.manifest import load_manifest, save_manifest
from snnet_export.runtime.ort.runner import OrtRunner, ort_session
from snnet_export.engine_folder.weight_file import WeightFile
from snnet_export.engine_folder.integrity import verify_folder

SEED = 0


@pytest.fixture(scope="session")
def fp32_folder(tmp_path_factory):
    """All 71 tiny stitches exported in FP32 with random weights (seed 0) and verified."""
    out = tmp_path_factory.mktemp("export") / "tiny-fp32"
    export_stitches("tiny", "random", out, precision="fp32", seed=SEED, progress=False)
    return out


@pytest.fixture()
def fp32_copy(fp32_folder, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(fp32_folder, dst)
    return dst


def test_every_stitch_exported_and_verified(fp32_folder, tiny_net):
    m = load_manifest(fp32_folder)
    assert [e["id"] for e in m["configs"]] == list(range(71))
    for e in m["configs"]:
        assert e["verified"]["ok"] and e["verified"]["rel_diff"] <= 1e-4
        assert (fp32_folder / e["onnx"]).is_file()
    assert verify_folder(fp32_folder)["stitches"] == 71
    files = {p.name for p in fp32_folder.iterdir()} - {LOCK_FILE}  # the write lock stays (see engine_folder.lock)
    assert files == {"manifest.json", "weights.fp32.bin"} | {f"stitch_{i:03d}.onnx" for i in range(71)}


def test_dynamic_batch(fp32_folder, tiny_net):
    m = load_manifest(fp32_folder)
    entry = m["configs"][45]
    graph = onnx.load(str(fp32_folder / entry["onnx"]), load_external_data=False).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert entry["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    sess = ort_session(fp32_folder, entry, WeightFile(fp32_folder, m["weights"]))
    for batch in (1, 5, 16):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            ref = tiny_net(x, 45).numpy()
        got = OrtRunner(sess)(x.numpy())
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_each_tensor_stored_once(fp32_folder, tiny_net):
    m = load_manifest(fp32_folder)
    keys = Counter((t["dtype"], tuple(t["shape"]), t["sha256"]) for t in m["weights"]["tensors"])
    assert max(keys.values()) == 1
    # every external reference of every graph points at one recorded tensor
    naive = sum(m["weights"]["tensors"][i]["length"] for e in m["configs"] for _, i in e["initializers"])
    param_bytes = sum(p.numel() for p in tiny_net.parameters()) * 4
    size = (fp32_folder / "weights.fp32.bin").stat().st_size
    assert size == m["weights"]["size"] <= 1.02 * param_bytes
    assert naive > 15 * size  # 71 graphs would hold the weights many times over without dedup
    # every big anchor matrix is in the file exactly once (as exported, possibly transposed)
    stored = {t["sha256"] for t in m["weights"]["tensors"]}
    import hashlib

    w = tiny_net.anchors[2].blocks[5].mlp.fc1.weight.detach().numpy()
    hits = [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() in stored for a in (w, w.T)]
    assert sum(hits) == 1


def test_fp16_weights_dedup_and_verify(tmp_path, tiny_net):
    out = tmp_path / "fp16"
    m = export_stitches("tiny", "random", out, precision="fp16", configs="0-2,3,4,37,38", seed=SEED, progress=False)
    keys = Counter((t["dtype"], tuple(t["shape"]), t["sha256"]) for t in m["weights"]["tensors"])
    assert max(keys.values()) == 1
    assert {t["dtype"] for t in m["weights"]["tensors"]} <= {"float16", "float32"}
    fp16 = sum(t["length"] for t in m["weights"]["tensors"] if t["dtype"] == "float16")
    assert fp16 > 0.9 * sum(t["length"] for t in m["weights"]["tensors"])
    assert all(e["verified"]["ok"] for e in m["configs"])
    assert m["configs"][0]["inputs"][0]["dtype"] == "float32"  # FP32 I/O kept
    # the same anchor tensors are shared: stitches 3 and 4 use S blocks 1..11 identically
    idx3 = {i for _, i in m["configs"][3]["initializers"]}
    idx4 = {i for _, i in m["configs"][4]["initializers"]}
    assert len(idx3 & idx4) > 0.8 * len(idx4)
    verify_folder(out)
    # LayerNorm and Softmax run in FP32 inside the FP16 graph
    g = onnx.load(str(out / "stitch_040.onnx" if (out / "stitch_040.onnx").exists() else out / "stitch_037.onnx"),
                  load_external_data=False).graph
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            src = producers.get(n.input[0])
            assert src is not None and src.op_type == "Cast" and src.attribute[0].i == onnx.TensorProto.FLOAT


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupted_weight_byte_is_refused(fp32_copy):
    m = load_manifest(fp32_copy)
    t = max(m["weights"]["tensors"], key=lambda t: t["length"])
    _flip_byte(fp32_copy / "weights.fp32.bin", t["offset"] + t["length"] // 2)
    with pytest.raises(VerifyError, match="SHA-256"):
        verify_folder(fp32_copy)
    users = [e for e in m["configs"] if any(i == m["weights"]["tensors"].index(t) for _, i in e["initializers"])]
    with pytest.raises(VerifyError, match="SHA-256"):
        ort_session(fp32_copy, users[0], WeightFile(fp32_copy, m["weights"]))


def test_location_outside_folder_is_refused(fp32_copy):
    m = load_manifest(fp32_copy)
    entry = m["configs"][10]
    path = fp32_copy / entry["onnx"]
    model = onnx.load(str(path), load_external_data=False)
    init = next(i for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL)
    for e in init.external_data:
        if e.key == "location":
            e.value = "../outside.bin"
    shutil.copy(fp32_copy / "weights.fp32.bin", fp32_copy.parent / "outside.bin")
    path.write_bytes(model.SerializeToString())
    with pytest.raises(VerifyError, match=r"stitch 10 .*SHA-256 differs"):
        verify_folder(fp32_copy)
    with pytest.raises(VerifyError, match="SHA-256 mismatch"):
        ort_session(fp32_copy, entry, WeightFile(fp32_copy, m["weights"]))
    # even with the manifest hash updated to match, the location itself is refused
    from snnet_export.fileio import sha256_file

    entry["onnx_sha256"] = sha256_file(path)
    save_manifest(fp32_copy, m)
    with pytest.raises(VerifyError, match="refusing to read outside"):
        verify_folder(fp32_copy)
    with pytest.raises(VerifyError, match="refusing to read outside"):
        ort_session(fp32_copy, entry, WeightFile(fp32_copy, m["weights"]))


def test_resume_skips_finished_stitches(tmp_path, monkeypatch):
    out = tmp_path / "resume"
    export_stitches("tiny", "random", out, configs="0-3", seed=SEED, progress=False)
    calls = []
    real = export_mod.onnx_from_stitch
    monkeypatch.setattr(export_mod, "onnx_from_stitch", lambda net, cid, *a: calls.append(cid) or real(net, cid, *a))
    m = export_stitches("tiny", "random", out, configs="0-5", seed=SEED, progress=False)
    assert calls == [4, 5]
    assert [e["id"] for e in m["configs"]] == [0, 1, 2, 3, 4, 5]
    verify_folder(out)


def test_interrupted_export_leaves_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "crash"
    real = export_mod.write_bytes_atomic

    def crash_on_third(path, data):
        if Path(path).name == "stitch_002.onnx":
            from snnet_export.fileio import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])  # half-written when the crash comes
                raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(export_mod, "write_bytes_atomic", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_stitches("tiny", "random", out, configs="0-4", seed=SEED, progress=False)
    names = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    assert names == ["manifest.json", "stitch_000.onnx", "stitch_001.onnx", "weights.fp32.bin"]
    m = load_manifest(out)
    assert [e["id"] for e in m["configs"]] == [0, 1]
    assert (out / "weights.fp32.bin").stat().st_size == m["weights"]["size"]  # stitch 2's bytes rolled back
    verify_folder(out)  # what was committed is complete and consistent
    monkeypatch.setattr(export_mod, "write_bytes_atomic", real)
    m = export_stitches("tiny", "random", out, configs="0-4", seed=SEED, progress=False)
    assert [e["id"] for e in m["configs"]] == [0, 1, 2, 3, 4]
    assert (out / "weights.fp32.bin").stat().st_size == m["weights"]["size"]
    verify_folder(out)


def test_refuses_other_family_or_precision_without_force(tmp_path):
    out = tmp_path / "f"
    export_stitches("tiny", "random", out, configs="0", seed=SEED, progress=False)
    with pytest.raises(ExportError, match="precision differ"):
        export_stitches("tiny", "random", out, precision="fp16", configs="0", seed=SEED, progress=False)
    m = export_stitches("tiny", "random", out, precision="fp16", configs="0", seed=SEED, force=True, progress=False)
    assert m["precision"] == "fp16" and not (out / "weights.fp32.bin").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an engine folder"):
        export_stitches("tiny", "random", tmp_path / "other", configs="0", progress=False)


def test_trained_checkpoint_is_exported(tmp_path, tiny_net):
    """A real checkpoint (not random weights) is what ends up in the graphs."""
    from snnet_export.model.snnet import save_checkpoint

    net = snnet_from_seed(99)
    ck = tmp_path / "ck.pth"
    save_checkpoint(net, ck)
    m = export_stitches("tiny", ck, tmp_path / "out", configs="40", progress=False)
    assert m["checkpoint"]["path"] == str(ck) and len(m["checkpoint"]["sha256"]) == 64
    sess = ort_session(tmp_path / "out", m["configs"][0], WeightFile(tmp_path / "out", m["weights"]))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(OrtRunner(sess)(x.numpy()), net(x, 40).numpy(), atol=1e-4)
        assert not np.allclose(OrtRunner(sess)(x.numpy()), tiny_net(x, 40).numpy(), atol=1e-3)


def snnet_from_seed(seed):
    from snnet_export.model.snnet import snnet_from_family

    return snnet_from_family("tiny", seed=seed)


@pytest.mark.parametrize("args, match", [
    (["export", "tiny", "missing.pth", "-o", "{tmp}/x"], "does not exist"),
    (["export", "tiny", "random", "-o", "{tmp}/x", "--configs", "99"], "are not in family tiny"),
    (["verify", "{tmp}"], "manifest.json is missing"),
])
def test_cli_errors_are_one_line(tmp_path, args, match):
    result = CliRunner().invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1 and match in result.output and "Traceback" not in result.output


def test_cli_verify_ok(fp32_folder):
    result = CliRunner().invoke(cli, ["verify", str(fp32_folder)])
    assert result.exit_code == 0 and "OK: 71 stitches" in result.output


def test_fp16_from_fp32_folder_reuses_graphs(fp32_folder, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(export_mod, "onnx_from_stitch", lambda *a, **k: calls.append(a))
    m = export_stitches("tiny", "random", tmp_path / "h", precision="fp16", configs="0,5,60",
                        seed=SEED, from_folder=fp32_folder, progress=False)
    assert calls == [] and all(e["verified"]["ok"] for e in m["configs"])
    assert {t["dtype"] for t in m["weights"]["tensors"]} == {"float16", "float32"}
    verify_folder(tmp_path / "h")
    with pytest.raises(ExportError, match="same family"):
        export_stitches("tiny", "random", tmp_path / "g", precision="fp16", configs="0", seed=SEED + 1,
                        from_folder=fp32_folder, progress=False)


def test_dynamo_exporter_also_verifies(tmp_path):
    """The torch.export-based exporter (the path forward once TorchScript export goes away)."""
    m = export_stitches("tiny", "random", tmp_path / "dyn", configs="40", exporter="dynamo", seed=SEED, progress=False)
    entry = m["configs"][0]
    assert m["exporter"] == "dynamo" and entry["verified"]["ok"]
    assert entry["inputs"][0]["shape"][0] == "batch"
    verify_folder(tmp_path / "dyn")
