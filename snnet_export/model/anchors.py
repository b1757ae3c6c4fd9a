"""Stage views of timm anchors (Swin, ResNet, LeViT) for staged SN-Net families.

A :class:`StageView` splits one timm model into the pieces a stitched forward runs: the stem, the
transition *into* each stage (Swin's patch merging, LeViT's attention-subsample; nothing for ResNet),
the blocks of each stage, and the head. Running them in order equals the model's own forward.
Layouts: Swin blocks read NHWC ``[B, H, W, C]``, LeViT blocks tokens ``[B, N, C]``, ResNet NCHW.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import FamilyError

ARCHS = ("swin", "resnet", "levit")


def arch_of(model: nn.Module) -> str | None:
    """``swin``, ``resnet`` or ``levit`` for the timm classes this module stitches, else ``None``."""
    name = type(model).__name__
    if name == "SwinTransformer":
        return "swin"
    if name == "ResNet":
        return "resnet"
    if name in ("Levit", "LevitDistilled") and not getattr(model, "use_conv", False):
        return "levit"
    return None


class StageView:
    """The stitchable pieces of one anchor (see module docstring)."""

    def __init__(self, model: nn.Module, arch: str) -> None:
        self.model = model
        self.arch = arch
        m: Any = model
        if arch == "swin":
            self.stages = [layer.blocks for layer in m.layers]
            self.widths = [int(layer.blocks[0].norm1.normalized_shape[0]) for layer in m.layers]
            self.grids = [tuple(int(r) for r in layer.output_resolution) for layer in m.layers]
            self.layout = "nhwc"
        elif arch == "resnet":
            self.stages = [getattr(m, f"layer{i + 1}") for i in range(4)]
            self.widths = [int(info["num_chs"]) for info in m.feature_info[1:]]
            self.reductions = [int(info["reduction"]) for info in m.feature_info[1:]]
            self.layout = "nchw"
        else:
            self.stages = [stage.blocks for stage in m.stages]
            self.widths = [int(w) for w in m.embed_dim]
            self.grids = [tuple(int(r) for r in stage.blocks[0].attn.resolution) for stage in m.stages]
            self.layout = "tokens"
        self.depths = [len(blocks) for blocks in self.stages]

    # ---- geometry ----
    def input_size(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` the anchor was built for (``None`` for ResNet: any size works)."""
        m: Any = self.model
        if self.arch == "swin":
            h, w = m.patch_embed.img_size
            return (int(m.patch_embed.proj.in_channels), int(h), int(w))
        if self.arch == "levit":
            stride = int(m.stem.stride)
            h, w = self.grids[0]
            return (int(m.stem.conv1.linear.in_channels), h * stride, w * stride)
        return None

    def in_chans(self) -> int:
        m: Any = self.model
        return int(m.conv1.in_channels) if self.arch == "resnet" else int(self.input_size()[0])  # type: ignore[index]

    def grid(self, s: int, input_size: tuple[int, int, int]) -> tuple[int, int]:
        """Spatial grid ``(H, W)`` that the blocks of stage ``s`` see."""
        if self.arch != "resnet":
            return self.grids[s]  # type: ignore[return-value]
        r = self.reductions[s]
        return (-(-input_size[1] // r), -(-input_size[2] // r))

    # ---- forward pieces ----
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m: Any = self.model
        if self.arch == "swin":
            return m.patch_embed(x)  # [B, H, W, C]
        if self.arch == "resnet":
            return m.maxpool(m.act1(m.bn1(m.conv1(x))))  # [B, C, H, W]
        return m.stem(x).flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, N, C]

    def enter(self, s: int, x: torch.Tensor) -> torch.Tensor:
        """The transition into stage ``s`` (identity where there is none)."""
        m: Any = self.model
        if self.arch == "swin":
            return m.layers[s].downsample(x)
        if self.arch == "levit":
            return m.stages[s].downsample(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the last stage: Swin's final norm, pooling, classifier(s)."""
        m: Any = self.model
        if self.arch == "swin":
            x = m.norm(x)
        return m.forward_head(x)

    # ---- modules, for parameter counting ----
    def stem_modules(self) -> list[nn.Module]:
        m: Any = self.model
        if self.arch == "swin":
            return [m.patch_embed]
        if self.arch == "resnet":
            return [m.conv1, m.bn1]
        return [m.stem]

    def enter_modules(self, s: int) -> list[nn.Module]:
        m: Any = self.model
        if self.arch == "swin":
            return [m.layers[s].downsample]
        if self.arch == "levit":
            return [m.stages[s].downsample]
        return []

    def head_modules(self) -> list[nn.Module]:
        m: Any = self.model
        if self.arch == "swin":
            return [m.norm, m.head]
        if self.arch == "resnet":
            return [m.fc]
        return [m.head, m.head_dist] if hasattr(m, "head_dist") else [m.head]

    def num_classes(self) -> int:
        m: Any = self.model
        return int(m.num_classes)


def stage_view(model: nn.Module, name: str, expected: str) -> StageView:
    """Wrap ``model`` after checking that it is a timm ``expected`` architecture."""
    arch = arch_of(model)
    if arch != expected:
        raise FamilyError(f"anchor '{name}' is a {type(model).__name__}, but this family kind needs a timm "
                          f"{expected} model here ({'SwinTransformer' if expected == 'swin' else 'ResNet' if expected == 'resnet' else 'Levit/LevitDistilled (use_conv=False)'})")
    return StageView(model, arch)


def to_layout(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Convert a stitched feature map between layouts (only NCHW -> NHWC/tokens is needed)."""
    if src == dst:
        return x
    if src == "nchw" and dst == "nhwc":
        return x.permute(0, 2, 3, 1)  # [B, C, H, W] -> [B, H, W, C]; token index y*W + x
    if src == "nchw" and dst == "tokens":
        return x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, H*W, C]
    raise FamilyError(f"cannot stitch a {src} feature map into a {dst} anchor")


def rows(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Flatten features to ``[rows, channels]`` with rows in (image, y, x) / (image, token) order."""
    if layout == "nchw":
        x = x.permute(0, 2, 3, 1)
    return x.reshape(-1, x.shape[-1])
