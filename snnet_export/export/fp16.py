"""FP32 -> FP16 ONNX conversion for TensorRT 11 (precision lives in the graph) and ONNX Runtime.

Deterministic: a tensor is cast with NumPy's round-to-nearest-even, so an anchor tensor has the
same FP16 bytes in every stitch and is stored once. Numerically sensitive ops run in FP32:
``LayerNormalization`` (statistics and affine), ``Softmax`` and ``BatchNormalization`` (LeViT's
BN after each Linear; conv BNs are already folded into the conv at export) get Casts to FP32 around
them and keep FP32 scale/bias/statistics, so no FP16 overflow in variance, exp or 1/sqrt(var). Graph inputs and outputs stay FP32
unless ``keep_io_types=False``.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32_OPS = ("LayerNormalization", "Softmax", "BatchNormalization")
_F32, _F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _to_fp16(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float16)
    return numpy_helper.from_array(arr, t.name)


def _cast(src: str, dst: str, to: int, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], name=name, to=to)


def fp16_from_fp32(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """Return a copy of ``model`` with FP16 weights and compute (see module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        raise ValueError("graphs with control-flow subgraphs are not supported by the FP16 converter")
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)

    def only_keep_ops(name: str) -> bool:
        return bool(consumers[name]) and all(c.op_type in KEEP_FP32_OPS for c in consumers[name])

    fp32_tensors = set()
    for i, init in enumerate(g.initializer):
        if init.data_type == _F32:
            if only_keep_ops(init.name):
                fp32_tensors.add(init.name)
            else:
                g.initializer[i].CopyFrom(_to_fp16(init))

    nodes: list[onnx.NodeProto] = []
    io_inputs = {v.name for v in g.input if v.type.tensor_type.elem_type == _F32}
    io_outputs = {v.name for v in g.output if v.type.tensor_type.elem_type == _F32}
    rename_in = {name: f"{name}__fp16" for name in io_inputs} if keep_io_types else {}
    for name, new in rename_in.items():
        nodes.append(_cast(name, new, _F16, f"{name}__to_fp16"))

    for n in g.node:
        for idx, name in enumerate(n.input):
            if name in rename_in:
                n.input[idx] = rename_in[name]
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == _F32:
                a.i = _F16
            elif a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _F32:
                if not (n.op_type == "Constant" and all(only_keep_ops(o) for o in n.output)):
                    a.t.CopyFrom(_to_fp16(a.t))
        if n.op_type in KEEP_FP32_OPS:
            tag = f"keep{len(nodes)}"  # unique per node: exported nodes may have no names
            for idx, name in enumerate(n.input):
                if name and name not in fp32_tensors:
                    nodes.append(_cast(name, f"{tag}_in{idx}_fp32", _F32, f"{tag}_in{idx}_cast"))
                    n.input[idx] = f"{tag}_in{idx}_fp32"
            outs = list(n.output)
            for idx, name in enumerate(outs):
                if name:
                    n.output[idx] = f"{name}__fp32"
            nodes.append(n)
            for name in outs:
                if name:
                    nodes.append(_cast(f"{name}__fp32", name, _F16, f"{name}__cast_fp16"))
            continue
        nodes.append(n)

    if keep_io_types:
        for name in io_outputs:
            for n in nodes:
                for idx, out in enumerate(n.output):
                    if out == name:
                        n.output[idx] = f"{name}__fp16"
            nodes.append(_cast(f"{name}__fp16", name, _F32, f"{name}__to_fp32"))
    else:
        for v in list(g.input) + list(g.output):
            if v.type.tensor_type.elem_type == _F32:
                v.type.tensor_type.elem_type = _F16
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return m
