"""ONNX Runtime fast path: each stitch's decomposed attention fused into one contrib op.

The exported graphs keep attention as standard ops (MatMul, Reshape, Transpose, Split, Squeeze,
Mul, MatMul, Softmax, MatMul, Transpose, Reshape) so every TensorRT parser reads them. On ONNX
Runtime's CPU provider that chain costs several full-tensor copies per block. :func:`fuse_attention`
rewrites it, in memory, into ``com.microsoft.Attention`` (QKV projection + bias + multi-head
attention in one kernel), whose weight and bias inputs are the original qkv initializers: the fused
graph still takes every weight from the folder's shared weight file, so nothing is copied.

ORT's own level-2 optimisations then fuse GELU, bias-GELU and skip-LayerNorm as usual. The
onnxruntime.transformers optimizer (``model_type="vit"``) is not used: it finds no attention in
these graphs (its patterns are HF-BERT's separate Q/K/V projections), its skip-LayerNorm and
bias-GELU fusions are the ones ORT applies at load anyway (measured: no faster than the stock
graph), and it needs the weights copied into the graph. Imports no torch, timm or click.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...deps import require
from ...errors import VerifyError, first_line
from ...engine_folder.weight_file import WeightFile

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


class _Index:
    """Producer, consumer and constant lookup over one graph."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.nodes = list(graph.node)  # one wrapper per node: identity checks below rely on it
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
        self.inits = {t.name: t for t in graph.initializer}
        self.outputs = {v.name for v in graph.output}
        self._np = numpy_helper

    def node(self, name: str, op: str) -> Any | None:
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op else None

    def const(self, name: str) -> np.ndarray[Any, Any] | None:
        """Value of a Constant node's output or an embedded initializer, else ``None``."""
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            return self._np.to_array(n.attribute[0].t)
        init = self.inits.get(name)
        if init is not None and not init.external_data:
            return self._np.to_array(init)
        return None

    def sole_consumer(self, name: str, op: str) -> Any | None:
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op and name not in self.outputs:
            return users[0]
        return None


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _squeezed(g: _Index, name: str) -> tuple[Any, str, Any] | None:
    """``(split node, its output, the squeeze)`` behind ``Squeeze(split_out, axes=[0])``."""
    sq = g.node(name, "Squeeze")
    if sq is None or len(sq.input) < 2:
        return None
    axes = g.const(sq.input[1])
    if axes is None or axes.tolist() != [0]:
        return None
    split = g.node(sq.input[0], "Split")
    return (split, sq.input[0], sq) if split is not None else None


def _heads(g: _Index, shape_name: str) -> tuple[int, int] | None:
    """``(heads, head_dim)`` from the ``[B, N, 3, H, D]`` reshape target (Concat or constant)."""
    value = g.const(shape_name)
    if value is not None:
        tail = [int(v) for v in value.reshape(-1)[2:]] if value.size == 5 else []
    else:
        cat = g.node(shape_name, "Concat")
        consts = [g.const(i) for i in cat.input[2:]] if cat is not None and len(cat.input) == 5 else []
        tail = [int(t.reshape(-1)[0]) for t in consts if t is not None and t.size == 1]
    if len(tail) != 3 or tail[0] != 3 or min(tail[1:]) < 1:
        return None
    return tail[1], tail[2]


def _qkv_projection(g: _Index, split: Any) -> tuple[Any, Any, Any, Any, str, tuple[int, int]] | None:
    """``MatMul(x, W) + b -> Reshape [B,N,3,H,D] -> Transpose (2,0,3,1,4)`` feeding ``split``."""
    tr = g.node(split.input[0], "Transpose")
    rs = tr and g.node(tr.input[0], "Reshape")
    if tr is None or rs is None or list(_attr(tr, "perm", [])) != [2, 0, 3, 1, 4]:
        return None
    heads = _heads(g, rs.input[1])
    add = g.node(rs.input[0], "Add")
    if heads is None or add is None:
        return None
    bias = next((i for i in add.input if i in g.inits), None)
    mm = next((g.node(i, "MatMul") for i in add.input if i != bias), None)
    if bias is None or mm is None or mm.input[1] not in g.inits:
        return None
    width = 3 * heads[0] * heads[1]
    if list(g.inits[mm.input[1]].dims)[1:] != [width] or list(g.inits[bias].dims) != [width]:
        return None
    return mm, add, rs, tr, bias, heads


def _match(g: _Index, softmax: Any) -> dict[str, Any] | None:
    """The timm attention chain around ``softmax``, or ``None`` when it is anything else."""
    if _attr(softmax, "axis", -1) not in (-1, 3):
        return None
    qk = g.node(softmax.input[0], "MatMul")
    av = g.sole_consumer(softmax.output[0], "MatMul")
    if qk is None or av is None or av.input[0] != softmax.output[0]:
        return None
    scale, q_name = None, qk.input[0]
    mul = g.node(q_name, "Mul")
    if mul is not None:
        for a, b in ((0, 1), (1, 0)):
            s = g.const(mul.input[b])
            if s is not None and s.size == 1:
                scale, q_name = float(s.reshape(-1)[0]), mul.input[a]
                break
        else:
            return None
    kt = g.node(qk.input[1], "Transpose")
    if kt is None or list(_attr(kt, "perm", [])) != [0, 1, 3, 2]:
        return None
    found = [_squeezed(g, q_name), _squeezed(g, kt.input[0]), _squeezed(g, av.input[1])]
    parts = [p for p in found if p is not None]
    if len(parts) != 3 or len({id(p[0]) for p in parts}) != 1:
        return None
    split = parts[0][0]
    if [p[1] for p in parts] != list(split.output) or _attr(split, "axis", 0) != 0:
        return None
    src = _qkv_projection(g, split)
    if src is None:
        return None
    mm, add, rs, tr, bias, (h, d) = src
    out_tr = g.sole_consumer(av.output[0], "Transpose")
    out_rs = out_tr and g.sole_consumer(out_tr.output[0], "Reshape")
    if out_tr is None or out_rs is None or list(_attr(out_tr, "perm", [])) != [0, 2, 1, 3]:
        return None
    inner = [mm, add, rs, tr, split, qk, softmax, av, out_tr, kt, *(p[2] for p in parts)]
    inner += [mul] if mul is not None else []
    inner_outs = {o for n in inner for o in n.output}
    private = all(any(u is n for n in (*inner, out_rs)) for o in inner_outs for u in g.consumers.get(o, []))
    if not private or inner_outs & g.outputs:
        return None  # an intermediate is used elsewhere: fusing would change the graph's meaning
    return {"x": mm.input[0], "w": mm.input[1], "b": bias, "heads": h, "head_dim": d,
            "scale": scale if scale is not None else d ** -0.5, "out": out_rs.output[0], "at": out_rs}


def _prune(graph: Any) -> None:
    """Drop nodes none of whose outputs reach a graph output."""
    needed = {v.name for v in graph.output}
    keep = []
    for n in reversed(graph.node):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))


def fuse_attention(model: Any) -> int:
    """Fuse every timm attention block of ``model`` (an ``onnx.ModelProto``, edited in place).

    Returns:
        The number of attention blocks fused (0 leaves the graph unchanged).
    """
    from onnx import helper

    g = _Index(model.graph)
    replace = {}
    for node in g.nodes:
        if node.op_type != "Softmax":
            continue
        m = _match(g, node)
        if m is None:
            continue
        replace[id(m["at"])] = helper.make_node(
            "Attention", [m["x"], m["w"], m["b"]], [m["out"]], domain=MS_DOMAIN,
            num_heads=m["heads"], scale=m["scale"])
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in g.nodes]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _prune(model.graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(replace)


def fast_graph(path: str | Path) -> tuple[bytes, int]:
    """Read a stitch graph (without its external data) and return it fused, serialised.

    Returns:
        ``(model bytes, number of attention blocks fused)``.
    """
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    fused = fuse_attention(model)
    return model.SerializeToString(), fused


def fast_session(folder: str | Path, entry: Mapping[str, Any], weights: WeightFile, so: Any,
                 providers: list[str], disabled_optimizers: list[str] | None = None) -> Any:
    """An ORT session over the fused graph of one stitch, weights from the shared file.

    The fused graph is handed to ORT as bytes; its initializers still name the folder's weight
    file, and each is overridden with a zero-copy view of the mapped file (``add_initializer``),
    as :func:`~.ort_backend.ort_session` does. ``model_external_initializers_file_folder_path``
    tells ORT which folder those names are relative to. (``add_external_initializers`` would
    also work from bytes, but ORT copies every tensor it is given that way.)
    ``disabled_optimizers``: ORT graph transformers to skip (``ort_session`` names those that would
    copy shared weights).
    """
    ort = require("onnxruntime", "running stitches with ONNX Runtime")
    path = Path(folder) / entry["onnx"]
    data, fused = fast_graph(path)
    log.debug("stitch %d: %d attention blocks fused", entry["id"], fused)
    keep = [ort.OrtValue.ortvalue_from_numpy(weights.array(index)) for _, index in entry["initializers"]]
    so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                os.fspath(Path(folder).resolve()))
    for (name, _), value in zip(entry["initializers"], keep):
        so.add_initializer(name, value)
    try:
        sess = ort.InferenceSession(data, so, providers=providers, disabled_optimizers=disabled_optimizers or [])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
        raise VerifyError(f"stitch {entry['id']}: ONNX Runtime refused the fused graph of {path.name}: "
                          f"{first_line(exc)} (the fused path needs an ONNX Runtime that reads "
                          "session.model_external_initializers_file_folder_path; the stock graph works "
                          "with any)") from None
    sess._snnet_keepalive = (keep, so, weights)  # the buffers must outlive the session
    sess._snnet_fused = fused
    return sess
