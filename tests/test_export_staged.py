"""Export of staged families (ResNet conv stitches, Swin windows/merging, ResNet->Swin, LeViT):
dynamic batch ONNX verified in ONNX Runtime, one shared weight file, FP16 with BatchNorm/LayerNorm/
Softmax in FP32, and the folder working with verify, build --dry-run, bench and the selector."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from snnet_export.engine_build.plan import plan_build
from snnet_export.cli import cli
from snnet_export.engine_folder.integrity import verify_folder
from snnet_export.engine_folder.manifest import load_manifest
from snnet_export.engine_folder.weight_file import WeightFile
from snnet_export.export.stitches import export_stitches
from snnet_export.model.flops import family_info
from snnet_export.model.snnet import snnet_from_family
from snnet_export.runtime.ort.runner import OrtRunner, ort_session
from snnet_export.runtime.selector import Selector

# every ResNet stitch; Swin: anchors, a stage-0 and a stage-1 stitch (shifted windows, merging),
# the quirk stitch (1,3)@L0 of stage 2 and an S->B one; ResNet->Swin and LeViT: one per stage
CASES = {"tiny-resnet": None, "tiny-swin": "0,3,5,9,16", "tiny-resnet-swin": "1,2,5", "tiny-levit": "0,1,3,6"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, single_thread):
    out = {}
    for family, ids in CASES.items():
        base = tmp_path_factory.mktemp(family)
        export_stitches(family, "random", base / "fp32", precision="fp32", configs=ids, progress=False)
        export_stitches(family, "random", base / "fp16", precision="fp16", configs=ids, progress=False,
                        from_folder=base / "fp32")
        out[family] = base
    return out


@pytest.mark.parametrize("family", CASES)
def test_stitches_export_verify_and_share_weights(folders, family):
    for precision in ("fp32", "fp16"):
        folder = folders[family] / precision
        m = load_manifest(folder)
        ids = [e["id"] for e in m["configs"]]
        assert ids == (list(range(10)) if CASES[family] is None else [int(i) for i in CASES[family].split(",")])
        for e in m["configs"]:
            assert e["verified"]["ok"] and e["verified"]["batches"] == [1, 3], (precision, e["id"], e["verified"])
            assert e["inputs"][0]["shape"][0] == "batch" and e["outputs"][0]["shape"] == ["batch", 10]
            assert (e["stage"] is None) == (e["position"] is None)
        assert verify_folder(folder)["stitches"] == len(ids)
        params = family_info(family)["total_params"]
        # the one weight file holds each tensor once: at most the SN-Net's parameter bytes (+2%)
        assert m["weights"]["size"] <= 1.02 * params * (4 if precision == "fp32" else 2)


def test_resnet_weight_file_has_every_tensor_once(folders):
    m = load_manifest(folders["tiny-resnet"] / "fp32")
    digests = Counter(t["sha256"] for t in m["weights"]["tensors"])
    assert max(digests.values()) == 1
    per_stitch = sum(len(e["initializers"]) for e in m["configs"])
    assert per_stitch > 3 * len(m["weights"]["tensors"])  # stitches share most tensors


def test_batchnorm_folded_or_fp32(folders):
    resnet = onnx.load(str(folders["tiny-resnet"] / "fp32" / "stitch_007.onnx"), load_external_data=False)
    ops = Counter(n.op_type for n in resnet.graph.node)
    assert ops["BatchNormalization"] == 0 and ops["Conv"] > 0  # folded into the convs at export
    levit = onnx.load(str(folders["tiny-levit"] / "fp16" / "stitch_006.onnx"), load_external_data=False)
    producers = {o: n for n in levit.graph.node for o in n.output}
    bns = [n for n in levit.graph.node if n.op_type == "BatchNormalization"]
    assert bns
    for n in bns:  # input cast to FP32; scale/bias/mean/var kept FP32 (initializers, not Cast outputs)
        src = producers.get(n.input[0])
        assert src is not None and src.op_type == "Cast" and src.attribute[0].i == onnx.TensorProto.FLOAT
    swin = onnx.load(str(folders["tiny-swin"] / "fp16" / "stitch_009.onnx"), load_external_data=False)
    for n in swin.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert producers_cast(swin, n.input[0])


def producers_cast(model, name):
    for n in model.graph.node:
        if name in n.output:
            return n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT
    return False


@pytest.mark.parametrize("family,cfg_id", [("tiny-swin", 9), ("tiny-resnet-swin", 5)])
def test_swin_stitch_runs_at_any_batch(folders, family, cfg_id):
    folder = folders[family] / "fp32"
    m = load_manifest(folder)
    entry = next(e for e in m["configs"] if e["id"] == cfg_id)
    sess = ort_session(folder, entry, WeightFile(folder, m["weights"]))
    net = snnet_from_family(family, seed=0)
    for batch in (1, 2, 5):
        x = torch.randn(batch, *net.input_size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = net(x, cfg_id).numpy()
        np.testing.assert_allclose(OrtRunner(sess)(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_build_dry_run_bench_and_selector(folders):
    folder = folders["tiny-resnet-swin"] / "fp16"
    plan = plan_build(folder, "dgpu", tensorrt_version="10.3.0")
    assert sorted(j.cfg_id for j in plan.jobs) == [1, 2, 5]
    result = CliRunner().invoke(cli, ["bench", str(folder), "--batch", "1", "--runs", "2", "--warmup", "0",
                                      "--min-seconds", "0", "--threads", "1"])
    assert result.exit_code == 0, result.output
    sel = Selector(folder, threads=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    assert sel.run(x).shape == (2, 10)


def test_swin_graphs_carry_no_transpose_of_a_weight(folders):
    """Swin is traced unfolded: each Linear would reach ORT as MatMul(x, Transpose(W)), which ORT
    folds into a private copy of W per session. The export stores W as [in, out] instead."""
    for precision in ("fp32", "fp16"):
        model = onnx.load(str(folders["tiny-swin"] / precision / "stitch_009.onnx"), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        assert not [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in inits]
        weights = [n.input[1] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
        assert weights and all(name.endswith(".weight.T") for name in weights), weights[:3]


def test_fold_weight_transposes_keeps_values_and_shared_weights():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from snnet_export.export.trace import _fold_weight_transposes

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)  # Linear weight [out, in]
    u = rng.standard_normal((2, 3, 4)).astype(np.float32)  # transposed with a non-default perm
    nodes = [helper.make_node("Transpose", ["W"], ["wt"]),  # default perm: reversed
             helper.make_node("MatMul", ["x", "wt"], ["h"]),
             helper.make_node("Transpose", ["W"], ["wt2"], perm=[1, 0]),  # the same fold, once
             helper.make_node("MatMul", ["x", "wt2"], ["h2"]),
             helper.make_node("Add", ["h", "h2"], ["s"]),
             helper.make_node("Transpose", ["U"], ["ut"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["s", "ut"], ["y0"]),
             helper.make_node("ReduceSum", ["y0"], ["y1"], keepdims=0),
             helper.make_node("Add", ["y1", "V"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(u, "U"),
         numpy_helper.from_array(np.ones(3, np.float32), "V")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    x = rng.standard_normal((5, 3)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run(model)
    assert _fold_weight_transposes(model) == 3
    assert [n.op_type for n in model.graph.node].count("Transpose") == 0
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert sorted(inits) == ["U.perm021", "V", "W.T"]  # U itself had no other use: dropped
    np.testing.assert_array_equal(inits["W.T"], w.T)
    np.testing.assert_allclose(run(model), before, rtol=1e-6)
