"""FLOPs and parameters per configuration, in the published (fvcore) convention.

Measured from the model with :mod:`torch.utils.flop_counter` on the meta device (no weights or
compute needed): one multiply-add counts as one FLOP, LayerNorm as 5 per element, eval BatchNorm as
2, adaptive average pooling as 1; softmax, GELU/ReLU/Hardswish, additions, means, rolls and
indexing are not counted; biases are not counted; the ViT head runs on the CLS token only.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from .snnet import SNNet
from .stitching import StitchConfig

_aten = torch.ops.aten


def _numel(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _layer_norm_flops(input_shape: Any, *args: Any, **kwargs: Any) -> int:
    return 2 * 5 * _numel(input_shape)  # doubled here, halved with the multiply-adds below


def _batch_norm_flops(input_shape: Any, *args: Any, **kwargs: Any) -> int:
    return 2 * 2 * _numel(input_shape)  # eval-mode affine BatchNorm: 2 per element


def _flop_mapping() -> dict[Any, Any]:
    mapping = {_aten.native_layer_norm: _layer_norm_flops, _aten.layer_norm: _layer_norm_flops}
    for name in ("_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit"):
        op = getattr(_aten, name, None)
        if op is not None:
            mapping[op] = _batch_norm_flops
    return mapping


@contextlib.contextmanager
def explicit_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run timm attention as explicit matmul + softmax (no fused SDPA) inside the block.

    Used for FLOP counting and for ONNX export (attention stays decomposed into standard ops).
    """
    saved: list[tuple[Any, bool]] = [  # timm Attention modules (fused_attn is a plain attribute)
        (m, bool(m.fused_attn)) for m in model.modules() if hasattr(m, "fused_attn")]
    for m, _ in saved:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, flag in saved:
            m.fused_attn = flag


def count_flops(snnet: SNNet, cfg: StitchConfig) -> int:
    """FLOPs of one image through ``cfg`` (published convention)."""
    dev = next(snnet.parameters()).device
    x = torch.zeros((1, *snnet.input_size), device=dev)
    counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
    pooled = [0]

    def pool_hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        pooled[0] += args[0].numel()  # 1 per input element; aten sees a free `mean` for size 1

    hooks = [m.register_forward_hook(pool_hook) for m in snnet.modules()
             if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    try:
        with torch.no_grad(), explicit_attention(snnet), counter:
            snnet(x, cfg.id)
    finally:
        for h in hooks:
            h.remove()
    return counter.get_total_flops() // 2 + pooled[0]


def count_params(snnet: SNNet, cfg: StitchConfig) -> int:
    """Parameters of ``cfg`` as published: a whole anchor for anchors; for stitches the modules the
    family's ``modules_of`` names (ViT: front patch embedding, the blocks used, the stitching layer,
    the end head and norm; staged families: see :meth:`.staged.StagedSNNet.modules_of`)."""
    seen: set[int] = set()
    total = 0
    for module in snnet.modules_of(cfg):
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def total_params(snnet: SNNet) -> int:
    return sum(p.numel() for p in snnet.parameters())


def config_records(family: Any) -> list[dict[str, Any]]:
    """One record per configuration of ``family`` (name, YAML path or spec), random weights.

    Keys: ``id, path, front, end, position, stitch_layer, flops, params``.
    """
    from .snnet import snnet_from_family

    snnet = snnet_from_family(family, device="meta")
    names = snnet.anchor_names
    return [{
        "id": c.id, "path": snnet.describe(c), "front": names[c.front], "end": names[c.end],
        "position": list(c.position) if c.position else None,
        "stitch_layer": list(c.stitch_layer) if c.stitch_layer else None, "stage": c.stage,
        "flops": count_flops(snnet, c), "params": count_params(snnet, c),
    } for c in snnet.configs]


def family_info(family: Any) -> dict[str, Any]:
    """Totals of ``family``: anchors, stitching layers, configurations and parameters."""
    from .snnet import StitchingLayer, anchor_width, snnet_from_family

    snnet = snnet_from_family(family, device="meta")
    anchor_params = [sum(p.numel() for p in a.parameters()) for a in snnet.anchors]
    stitch_params = sum(p.numel() for p in snnet.stitch_layers.parameters())
    return {
        "name": snnet.family.name,
        "description": snnet.family.description,
        "anchors": [{"name": s.name, "model": s.model, "params": n,
                     "width": snnet.views[i].widths if hasattr(snnet, "views") else anchor_width(a)}
                    for i, (s, a, n) in enumerate(zip(snnet.family.anchors, snnet.anchors, anchor_params))],
        "kind": snnet.family.kind,
        "depth": snnet.depth,
        "stitched_stages": list(getattr(snnet, "stages", [])) or None,
        "input_size": list(snnet.input_size),
        "num_classes": snnet.num_classes,
        "head": snnet.family.head if snnet.family.kind == "vit" else "end anchor's own head",
        "num_configs": len(snnet.configs),
        "num_stitch_layers": sum(1 for m in snnet.stitch_layers.modules() if isinstance(m, StitchingLayer)),
        "anchor_params": sum(anchor_params),
        "stitch_params": stitch_params,
        "total_params": total_params(snnet),
    }
