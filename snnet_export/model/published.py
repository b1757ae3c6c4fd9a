"""Map the published (official SN-Net) checkpoint layouts onto timm 1.0 keys (SNNET_FAMILIES.md).

- Swin (Microsoft layout, also the Swin anchor of ResNet->Swin): drop ``relative_position_index`` and
  ``attn_mask`` buffers, move ``layers.{i}.downsample`` to ``layers.{i+1}.downsample`` (timm merges at
  the start of a stage), rename ``head.{weight,bias}`` to ``head.fc.*``. Same result as timm's
  ``swin_transformer.checkpoint_filter_fn``, without its silent resampling of mis-shaped tensors.
- ResNet: timm keys already; drop the split-BN auxiliary ``.aux_bn.`` keys.
- LeViT (Facebook layout): the flat ``blocks.{n}`` list is split into stages, sub-modules renamed
  (table in the spec), ``attention_bias_idxs`` dropped.
Each mapping leaves a timm-1.0 state dict unchanged, so our own checkpoints load through the same door.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

Tensors = dict[str, torch.Tensor]


def swin_from_official(sd: Mapping[str, torch.Tensor]) -> Tensors:
    """Microsoft-layout Swin keys -> timm 1.0 ``SwinTransformer`` keys (no-op on timm keys)."""
    if "layers.0.downsample.reduction.weight" not in sd:
        return {k: v for k, v in sd.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    out: Tensors = {}
    for k, v in sd.items():
        if k.endswith(("relative_position_index", "attn_mask")):
            continue
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            k = f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
        elif k in ("head.weight", "head.bias"):
            k = "head.fc." + k.split(".")[1]
        out[k] = v
    return out


def resnet_from_official(sd: Mapping[str, torch.Tensor]) -> Tensors:
    """Drop split-BN auxiliary keys (``--split-bn`` training); the rest is timm 1.0 already."""
    return {k: v for k, v in sd.items() if ".aux_bn." not in k}


def levit_entries(depths: list[int]) -> list[tuple[str, int, int]]:
    """The official flat ``blocks`` list: ``(kind, stage, block)`` with kind in
    ``attn, mlp, down, down_mlp``; a subsample and its MLP open every stage after the first."""
    entries: list[tuple[str, int, int]] = []
    for s, depth in enumerate(depths):
        if s > 0:
            entries += [("down", s, 0), ("down_mlp", s, 0)]
        for b in range(depth):
            entries += [("attn", s, b), ("mlp", s, b)]
    return entries


_LN = r"(c\.weight|bn\.\w+)$"  # Conv2d_BN / Linear_BN children: c.weight and bn.<p>


def _ln(rest: str) -> str:
    return "linear.weight" if rest == "c.weight" else rest


def levit_from_official(sd: Mapping[str, torch.Tensor], depths: list[int]) -> Tensors:
    """Facebook-layout LeViT keys -> timm 1.0 ``Levit``/``LevitDistilled`` keys (no-op on timm keys)."""
    if "patch_embed.0.c.weight" not in sd:
        return {k: v for k, v in sd.items() if "attention_bias_idxs" not in k}
    entries = levit_entries(depths)
    out: Tensors = {}
    for k, v in sd.items():
        if "attention_bias_idxs" in k:
            continue
        out[_levit_key(k, entries)] = v
    return out


def _levit_key(k: str, entries: list[tuple[str, int, int]]) -> str:
    m = re.match(r"patch_embed\.(\d+)\." + _LN, k)
    if m:
        return f"stem.conv{int(m.group(1)) // 2 + 1}.{_ln(m.group(2))}"
    m = re.match(r"(head|head_dist)\.(l|bn)\.(.*)", k)
    if m:
        return f"{m.group(1)}.{'linear' if m.group(2) == 'l' else 'bn'}.{m.group(3)}"
    m = re.match(r"blocks\.(\d+)\.(.*)", k)
    if not m or int(m.group(1)) >= len(entries):
        return k  # unknown: left as is, reported as unexpected by the strict load
    kind, s, b = entries[int(m.group(1))]
    rest = m.group(2)
    block, down = f"stages.{s}.blocks.{b}", f"stages.{s}.downsample"
    rules: list[tuple[str, str]] = {
        "attn": [(r"m\.attention_biases$", f"{block}.attn.attention_biases"),
                 (r"m\.qkv\." + _LN, f"{block}.attn.qkv.{{}}"),
                 (r"m\.proj\.1\." + _LN, f"{block}.attn.proj.ln.{{}}")],
        "mlp": [(r"m\.0\." + _LN, f"{block}.mlp.ln1.{{}}"), (r"m\.2\." + _LN, f"{block}.mlp.ln2.{{}}")],
        "down": [(r"attention_biases$", f"{down}.attn_downsample.attention_biases"),
                 (r"kv\." + _LN, f"{down}.attn_downsample.kv.{{}}"),
                 (r"q\.1\." + _LN, f"{down}.attn_downsample.q.ln.{{}}"),
                 (r"proj\.1\." + _LN, f"{down}.attn_downsample.proj.ln.{{}}")],
        "down_mlp": [(r"m\.0\." + _LN, f"{down}.mlp.ln1.{{}}"), (r"m\.2\." + _LN, f"{down}.mlp.ln2.{{}}")],
    }[kind]
    for pattern, template in rules:
        mm = re.match(pattern, rest)
        if mm:
            return template.format(_ln(mm.group(1))) if mm.groups() else template
    return k


def anchor_from_official(sd: Mapping[str, torch.Tensor], arch: str, model: Any) -> Tensors:
    """One anchor's state dict in its published layout -> timm 1.0 keys for ``model``."""
    if arch == "swin":
        return swin_from_official(sd)
    if arch == "resnet":
        return resnet_from_official(sd)
    if arch == "levit":
        return levit_from_official(sd, [len(st.blocks) for st in model.stages])
    return dict(sd)


def snnet_from_official(sd: Mapping[str, torch.Tensor], snnet: Any) -> Tensors:
    """A whole published SN-Net state dict (``anchors.{i}.*`` + ``stitch_layers.*``; an optional
    DDP ``module.`` prefix) -> this tool's layout for ``snnet`` (a staged SN-Net)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    out: Tensors = {}
    per_anchor: dict[int, Tensors] = {}
    for k, v in sd.items():
        m = re.match(r"anchors\.(\d+)\.(.*)", k)
        if m and int(m.group(1)) < len(snnet.views):
            per_anchor.setdefault(int(m.group(1)), {})[m.group(2)] = v
        else:
            out[k] = v
    for i, sub in per_anchor.items():
        view = snnet.views[i]
        out.update({f"anchors.{i}.{k}": v for k, v in anchor_from_official(sub, view.arch, view.model).items()})
    return out
