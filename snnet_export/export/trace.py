"""Trace one stitch configuration into a compact ONNX graph (dynamic batch): :func:`onnx_from_stitch`.

The graph keeps its initializers in memory; :mod:`.stitches` moves them into the folder's shared
weight file. Large Constant nodes become initializers (stored once), one Constant per value.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator

import onnx
import torch

from ..errors import ExportError
from ..model.flops import explicit_attention
from ..model.snnet import SNNet

DEFAULT_OPSET = 18  # TensorRT 10.3 (JetPack 6) parses it; opset 23's Attention op it cannot
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class _Stitch(torch.nn.Module):
    """One configuration as a module with a single tensor input (what the exporter traces)."""

    def __init__(self, snnet: SNNet, cfg_id: int) -> None:
        super().__init__()
        self.snnet = snnet
        self.cfg_id = cfg_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.snnet(x, self.cfg_id)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints (they would break our progress bars)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _strip(model: onnx.ModelProto) -> None:
    """Shrink a graph to what runtimes read; 71 graphs share one weight file, so their own bytes
    count: drop doc strings, metadata, value_info and node names, bypass Identity nodes, keep one
    Constant node per distinct value (a Swin graph repeats ~2,800 shape scalars), and give
    intermediate tensors short names (graph inputs, outputs and initializers keep theirs)."""
    model.doc_string = ""
    del model.metadata_props[:]
    g = model.graph
    g.doc_string = ""
    del g.value_info[:]
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    alias: dict[str, str] = {}
    constants: dict[bytes, str] = {}
    nodes = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in keep:
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
            continue
        if n.op_type == "Constant" and n.output[0] not in keep:  # one node per distinct value
            key = b"".join(a.SerializeToString() for a in n.attribute)
            if key in constants:
                alias[n.output[0]] = constants[key]
                continue
            constants[key] = n.output[0]
        nodes.append(n)
    fixed = keep | {i.name for i in g.initializer}
    short: dict[str, str] = {}
    for n in nodes:
        n.name = ""
        n.doc_string = ""
        del n.metadata_props[:]
        for field in (n.input, n.output):
            for idx, name in enumerate(field):
                name = alias.get(name, name)
                if name and name not in fixed:
                    name = short.setdefault(name, f"t{len(short):x}")
                field[idx] = name
    del g.node[:]
    g.node.extend(nodes)
    for init in g.initializer:
        init.doc_string = ""
    model.ir_version = min(model.ir_version, 10)  # ONNX Runtime and TensorRT read IR <= 10


HOIST_BYTES = 1024


def _hoist_constants(model: onnx.ModelProto, min_bytes: int = HOIST_BYTES) -> None:
    """Turn large ``Constant`` nodes into initializers, so the weight store keeps them once.

    The tracer embeds buffers it folds as Constant nodes: Swin's shifted-window attention masks
    (``[1, nW, 1, 49, 49]``, 0.6 MB in stage 0) would otherwise sit inside every graph (1.1 MB of
    each full-size Swin graph); as initializers they go to the shared weight file, deduplicated.
    """
    from onnx import numpy_helper

    g = model.graph
    nodes = []
    for n in g.node:
        if (n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"
                and n.attribute[0].type == onnx.AttributeProto.TENSOR):
            arr = numpy_helper.to_array(n.attribute[0].t)
            if arr.nbytes >= min_bytes:
                g.initializer.append(numpy_helper.from_array(arr, n.output[0]))
                continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)


def _fold_weight_transposes(model: onnx.ModelProto) -> int:
    """Replace every ``Transpose`` of an initializer by the transposed initializer; returns how many.

    Swin graphs are traced without constant folding, so each ``nn.Linear`` arrives as
    ``MatMul(x, Transpose(W))``. ONNX Runtime folds those Transposes when it loads the graph, into
    tensors it allocates itself: a private copy of every Linear weight per session (Swin-B: +436 MiB
    of anonymous memory per resident ``shared`` session), and MatMuls that no longer read the shared
    weight file. Folded here, the weight file stores ``W`` as ``[in, out]`` (once, like the DeiT
    graphs that torch folds) and every session reads it zero-copy.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, int] = {}
    for n in g.node:
        for name in n.input:
            users[name] = users.get(name, 0) + 1
    outputs = {o.name for o in g.output} | {i.name for i in g.input}
    folded: dict[str, str] = {}  # Transpose output -> new initializer
    made: set[str] = set()
    nodes = []
    for n in g.node:
        if (n.op_type == "Transpose" and len(n.input) == 1 and n.input[0] in inits
                and n.input[0] not in outputs and n.output[0] not in outputs):
            arr = numpy_helper.to_array(inits[n.input[0]])
            perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
            suffix = "T" if perm in (None, list(range(arr.ndim))[::-1]) else "perm" + "".join(map(str, perm))
            name = f"{n.input[0]}.{suffix}"
            if name not in made:
                g.initializer.append(numpy_helper.from_array(arr.transpose(perm).copy(), name))
                made.add(name)
            folded[n.output[0]] = name
            users[n.input[0]] -= 1
            continue
        nodes.append(n)
    for n in nodes:
        for idx, name in enumerate(n.input):
            n.input[idx] = folded.get(name, name)
    unused = [i for i in g.initializer if users.get(i.name, 1) <= 0]
    for init in unused:
        g.initializer.remove(init)
    del g.node[:]
    g.node.extend(nodes)
    return len(folded)


def onnx_from_stitch(snnet: SNNet, cfg_id: int, opset: int = DEFAULT_OPSET,
                     precision: str = "fp32", exporter: str = "torchscript") -> onnx.ModelProto:
    """Trace configuration ``cfg_id`` into an ONNX graph with a symbolic batch dimension.

    Attention is exported decomposed (MatMul/Softmax), so every TensorRT 10.x parser reads it.
    Swin families are traced without constant folding: folding would expand every block's 169-row
    relative-position table into a ``[1, heads, 49, 49]`` bias (+1.1% of the weight file at full
    size); unfolded, the table stays a parameter and the one index buffer is stored once (runtimes
    fold the Gather when they load the graph). ``exporter="torchscript"`` (default) is torch.onnx's
    tracing exporter: about 1 s a stitch on
    2 cores against about 5 s for ``"dynamo"`` (torch.export + onnxscript rewrites), whose fixed
    cost dominates a 71-stitch family.
    """
    x = torch.randn(2, *snnet.input_size)  # batch 2: a batch of 1 would be specialised by dynamo
    module = _Stitch(snnet.eval(), cfg_id).eval()  # export restores the wrapper's mode onto snnet
    with torch.no_grad(), explicit_attention(snnet), _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                module, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
                external_data=False, optimize=True, verbose=False)
            assert program is not None  # dynamo=True always returns the ONNXProgram
            model = program.model_proto
        elif exporter == "torchscript":
            buf = io.BytesIO()
            # torch annotates f as a path, but the TorchScript exporter also writes to file objects
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset,  # type: ignore[arg-type]
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=snnet.family.kind != "swin")
            model = onnx.load_from_string(buf.getvalue())
        else:
            raise ExportError(f"exporter must be 'torchscript' or 'dynamo', got '{exporter}'")
    _strip(model)
    _hoist_constants(model)
    _fold_weight_transposes(model)
    model.graph.name = f"snnet_stitch_{cfg_id:03d}"
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.dim_param:
            raise ExportError(f"stitch {cfg_id}: exported {value.name} has a fixed batch dimension")
        dim.dim_param = "batch"
    if precision == "fp16":
        from .fp16 import fp16_from_fp32

        model = fp16_from_fp32(model)
    return model
