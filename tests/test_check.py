"""``snnet-export check``: what TensorRT's parser/builder would reject, found on CPU.

Real exports of the tiny family (FP32 and FP16) and the small Gemm folders of tests/engine_folder.py
must pass; planted violations must fail with a message that names the file, the tensor or op and
the fix. No TensorRT is involved: the check reads ONNX graphs and the committed support table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from engine_folder import make_engine_folder
from onnx import TensorProto, helper

import snnet_export.engine_build.trt_builder as trt_builder
import snnet_export.runtime.trt as trt_pkg
from snnet_export import deps
from snnet_export.engine_build import build_engines
from snnet_export.engine_build.check import CheckError, check_folder, op_problem, opset_range
from snnet_export.engine_build.targets import list_targets
from snnet_export.cli import cli
from snnet_export.engine_folder.engine_records import GpuEnv


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    """Real exports of the tiny family: FP32 and FP16, three stitches each (anchors and a stitched one)."""
    from snnet_export.export.stitches import export_stitches

    root = tmp_path_factory.mktemp("check")
    for precision in ("fp32", "fp16"):
        export_stitches("tiny", "random", root / precision, precision=precision, configs="0,5,40", seed=0,
                        progress=False)
    return root


def _errors(result) -> list[str]:
    return [f"{p.where}: {p.what}" for p in result.errors]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("target", ["dgpu", "jetson-orin", "jetson-thor"])
def test_real_exports_pass(tiny_exports, precision, target):
    result = check_folder(tiny_exports / precision, target)
    assert result.ok, _errors(result)
    assert result.files == ("stitch_000.onnx", "stitch_005.onnx", "stitch_040.onnx")
    assert result.problems == ()  # the tiny export's batch_max (64) covers every built-in target


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_test_folders_pass(tmp_path, precision):
    result = check_folder(make_engine_folder(tmp_path / precision, precision=precision), "dgpu", tensorrt_version="11.0")
    assert result.ok, _errors(result)
    assert [p.what for p in result.problems] == [
        "the export's batch_max 16 is below target dgpu's batch max 64: engines take batch <= 16"]


def _edit(path: Path, fn) -> None:
    """Load ``path`` (graph only), apply ``fn`` to the model, save it back."""
    model = onnx.load(str(path), load_external_data=False)
    fn(model)
    onnx.save(model, str(path))


def test_op_newer_than_the_targets_tensorrt(tmp_path):
    folder = make_engine_folder(tmp_path / "f", ids=(0,), opset=19)

    def add_deform_conv(m):  # a DeformConv (TensorRT >= 10.1) beside the Gemm; its output unused
        w = helper.make_tensor("dw", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
        off = helper.make_tensor("doff", TensorProto.FLOAT, [1, 2, 4, 4], np.zeros(32, np.float32))
        m.graph.initializer.extend([w, off])
        m.graph.node.append(helper.make_node("DeformConv", ["input", "dw", "doff"], ["deformed"]))

    _edit(folder / "stitch_000.onnx", add_deform_conv)
    old = check_folder(folder, "dgpu")  # TensorRT 10.0
    assert "stitch_000.onnx: op DeformConv needs TensorRT >= 10.1; this target's TensorRT is 10.0: re-export " \
           "without it or pick a target with a newer TensorRT (1 node(s))" in _errors(old)
    assert not any("DeformConv" in e for e in _errors(check_folder(folder, "jetson-orin")))  # 10.3 has it


def test_unsupported_and_contrib_ops():
    assert "not supported by TensorRT's ONNX parser" in op_problem("Unique", "", "10.13").what
    assert "domain 'com.microsoft'" in op_problem("Attention", "com.microsoft", "11.0").what
    assert op_problem("Attention", "", "10.13").what.startswith("op Attention needs TensorRT >= 10.14")
    assert op_problem("Attention", "", "10.14.1") is None and op_problem("MatMul", "", "10.0") is None
    assert op_problem("Mish", "", "10.13").severity == "warning"  # not in our table: look it up


def test_too_new_opset(tmp_path):
    folder = make_engine_folder(tmp_path / "f", ids=(0,), opset=21)
    assert _errors(check_folder(folder, "jetson-orin")) == [
        "stitch_000.onnx: uses ONNX opset 21; target jetson-orin (TensorRT 10.3) parses opsets 9..20: "
        "re-export with `--opset 20`"]
    assert check_folder(folder, "jetson-thor").ok  # TensorRT 10.13, max_opset 22
    # the target's max_opset caps a newer parser's range too
    assert "parses opsets 9..20" in _errors(check_folder(folder, "jetson-orin", tensorrt_version="10.15.1"))[0]


def _set_external(key: str, value: str | None):
    def fn(m):
        t = m.graph.initializer[0]  # W0: 48x10 float32 = 1920 bytes at offset 0
        entries = {e.key: e.value for e in t.external_data}
        if value is None:
            entries.pop(key)
        else:
            entries[key] = value
        del t.external_data[:]
        for k, v in entries.items():
            e = t.external_data.add()
            e.key, e.value = k, v
    return fn


@pytest.mark.parametrize("key, value, message", [
    ("location", "../weights.fp32.bin", "external-data location '../weights.fp32.bin' must be a bare file name"),
    ("location", "/tmp/weights.fp32.bin", "external-data location '/tmp/weights.fp32.bin' must be a bare file name"),
    ("location", "sub/weights.fp32.bin", "external-data location 'sub/weights.fp32.bin' must be a bare file name"),
    ("location", "other.bin", "external-data file other.bin is missing from the folder"),
    ("basepath", "x", "external-data key(s) ['basepath'] are not accepted by TensorRT's parser"),
    ("length", "1000", "external-data length 1000 != the tensor's 1920 bytes ([48, 10])"),
    ("length", None, "external data has no 'length'"),
    ("offset", "1000000", "bytes 1000000..1001920 lie outside weights.fp32.bin"),
])
def test_bad_external_data_entries(tmp_path, key, value, message):
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    _edit(folder / "stitch_000.onnx", _set_external(key, value))
    errors = _errors(check_folder(folder, "dgpu"))
    assert len(errors) == 1 and errors[0].startswith("stitch_000.onnx: tensor W0: ") and message in errors[0], errors


def test_fp16_fp32_type_mix(tmp_path):
    folder = make_engine_folder(tmp_path / "f", ids=(0,), precision="fp16")

    def drop_input_cast(m):  # Flatten now reads the FP32 input while Gemm's weights stay FP16
        cast = next(n for n in m.graph.node if n.op_type == "Cast" and n.input[0] == "input")
        m.graph.node.remove(cast)
        next(n for n in m.graph.node if n.op_type == "Flatten").input[0] = "input"

    _edit(folder / "stitch_000.onnx", drop_input_cast)
    errors = _errors(check_folder(folder, "dgpu"))
    assert len(errors) == 1 and errors[0].startswith(
        "stitch_000.onnx: strict ONNX type/shape inference fails (a strongly typed TensorRT build rejects it too)")
    assert "Gemm" in errors[0]


def test_fixed_batch_and_input_name(tmp_path):
    folder = make_engine_folder(tmp_path / "f", ids=(0, 1))

    def fix_batch(m):
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1

    _edit(folder / "stitch_000.onnx", fix_batch)
    _edit(folder / "stitch_001.onnx", lambda m: setattr(m.graph.input[0], "name", "pixels"))
    errors = _errors(check_folder(folder, "dgpu"))
    assert "stitch_000.onnx: input input has a fixed batch 1 but target dgpu's profile varies it over 1..16: " \
           "export with a dynamic batch" in errors
    assert any(e.startswith("stitch_001.onnx: graph inputs ['pixels']; the manifest promises one input 'input'")
               for e in errors)


def test_dla_targets(tmp_path, tiny_exports):
    prof = tmp_path / "dla.yaml"
    prof.write_text("platform: jetson\nmin_tensorrt: '10.3'\nbatch: {min: 4, opt: 4, max: 4}\n"
                    "dla: {core: 0, gpu_fallback: true}\n")
    result = check_folder(tiny_exports / "fp16", prof)
    assert result.ok and "Erf" in result.problems[0].what and result.problems[0].severity == "warning"
    prof.write_text(prof.read_text().replace("gpu_fallback: true", "gpu_fallback: false"))
    errors = _errors(check_folder(tiny_exports / "fp16", prof))
    assert len(errors) == 1 and "LayerNormalization" in errors[0] and "set gpu_fallback: true" in errors[0]


def test_builtin_targets_stay_within_their_parsers_opsets():
    for t in list_targets():
        assert t.max_opset <= opset_range(t.min_tensorrt)[1], t.name


def test_build_runs_the_check_first(tmp_path, monkeypatch):
    folder = make_engine_folder(tmp_path / "f", ids=(0, 1))
    _edit(folder / "stitch_001.onnx", _set_external("location", "../weights.fp32.bin"))
    monkeypatch.setattr(deps, "require", lambda name, purpose: None)
    monkeypatch.setattr(trt_pkg, "gpu_environment", lambda backend=None: GpuEnv("10.3.0.30", "Orin", "8.7"))

    def no_builder(*args, **kwargs):
        raise AssertionError("the builder must not start when the check fails")

    monkeypatch.setattr(trt_builder, "TrtBuilder", no_builder)
    with pytest.raises(CheckError, match=r"TensorRT would reject .* for target dgpu \(TensorRT 10.3.0.30\): "
                                         r"stitch_001.onnx: tensor W1: external-data location"):
        build_engines(folder, "dgpu", progress=False)


def test_cli(tmp_path):
    folder = make_engine_folder(tmp_path / "f", ids=(0, 1))
    ok = CliRunner().invoke(cli, ["check", str(folder), "--target", "jetson-orin"])
    assert ok.exit_code == 0 and "2 graph(s), 0 error(s), 0 warning(s)" in ok.output
    bad = CliRunner().invoke(cli, ["check", str(folder), "--target", "jetson-orin", "--configs", "1",
                                   "--tensorrt", "10.0"])
    assert bad.exit_code == 0 and "TensorRT 10.0): 1 graph(s)" in bad.output
    _edit(folder / "stitch_001.onnx", _set_external("length", "4"))
    bad = CliRunner().invoke(cli, ["check", str(folder), "--target", "jetson-orin"])
    assert bad.exit_code == 1 and "error: stitch_001.onnx: tensor W1: external-data length 4" in bad.output
