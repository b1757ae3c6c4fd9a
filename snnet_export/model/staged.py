"""SN-Nets over staged anchors: Swin, ResNet, ResNet->Swin and LeViT (SNNET_FAMILIES.md).

Stitching happens inside one stage ``s`` of equal token grid: the front anchor runs its stem, the
stages before ``s`` with the transition into ``s``, and blocks ``0..j`` of stage ``s``; the stitching
layer ``stitch_layers.{S}.{pair}.{layer}`` (Linear on tokens, or 1x1 Conv2d on NCHW maps) maps the
widths; the end anchor runs blocks ``k..`` of stage ``s``, its later stages and its normal head
(Swin's final norm and LeViT's averaged two heads included). The state-dict layout is
``anchors.{i}.<timm 1.0 keys>`` plus the stitching layers; published files are mapped on load
(:mod:`.published`).
"""
from __future__ import annotations

from typing import Sequence, cast

import torch
from torch import nn

from ..errors import FamilyError
from .anchors import stage_view, to_layout
from .family import FamilySpec
from .layers import StitchingLayer
from .stitching import StitchConfig, config_by_id, enumerate_staged_configs, stage_layer_count

# family kind -> the architecture of each anchor (the last entry repeats)
KIND_ARCHS = {"swin": ("swin",), "resnet": ("resnet",), "levit": ("levit",), "resnet-swin": ("resnet", "swin")}


def default_stages(kind: str, num_stages: int) -> tuple[int, ...]:
    """Published stitched stages: Swin/LeViT all but the last, ResNet kinds all but first and last."""
    first = 1 if kind.startswith("resnet") else 0
    return tuple(range(first, num_stages - 1))


class StagedSNNet(nn.Module):
    """A stitchable network over staged anchors (same public API as :class:`.snnet.SNNet`)."""

    def __init__(self, family: FamilySpec, anchors: Sequence[nn.Module]) -> None:
        super().__init__()
        archs = KIND_ARCHS.get(family.kind)
        if archs is None:
            raise FamilyError(f"family '{family.name}': unknown kind '{family.kind}'")
        if family.kind == "resnet-swin" and len(anchors) != 2:
            raise FamilyError(f"family '{family.name}': a resnet-swin family has exactly two anchors "
                              f"(a ResNet, then a Swin), got {len(anchors)}")
        self.views = [stage_view(a, spec.name, archs[min(i, len(archs) - 1)])
                      for i, (spec, a) in enumerate(zip(family.anchors, anchors))]
        counts = {len(v.depths) for v in self.views}
        if len(counts) != 1:
            raise FamilyError(f"family '{family.name}': anchors must have the same number of stages, got "
                              + ", ".join(f"{s.name}: {len(v.depths)}" for s, v in zip(family.anchors, self.views)))
        self.family = family
        self.stages = family.stages if family.stages is not None else default_stages(family.kind, counts.pop())
        bad = [s for s in self.stages if s >= len(self.views[0].depths)]
        if bad or not self.stages:
            raise FamilyError(f"family '{family.name}': stitched stages {list(self.stages)} do not exist: "
                              f"the anchors have stages 0-{len(self.views[0].depths) - 1}")
        self._input_size = self._find_input_size()
        self._check_grids()
        self.anchors = nn.ModuleList(anchors)
        depths = [v.depths for v in self.views]
        k, st = family.kernel_size, family.stride
        self.stitch_layers = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(StitchingLayer(self.views[p].widths[s], self.views[p + 1].widths[s], family.stitch_kind)
                              for _ in range(stage_layer_count(depths[p][s], depths[p + 1][s], k, st)))
                for p in range(len(anchors) - 1))
            for s in self.stages)
        self.configs: tuple[StitchConfig, ...] = enumerate_staged_configs(depths, self.stages, k, st)
        self.config_id = 0

    # ---- geometry and checks ----
    def _find_input_size(self) -> tuple[int, int, int]:
        sizes = {got for v in self.views if (got := v.input_size()) is not None}
        if len(sizes) > 1:
            raise FamilyError(f"family '{self.family.name}': anchors are built for different inputs {sorted(sizes)}")
        if sizes:
            size = sizes.pop()
            if self.family.input_size is not None and tuple(self.family.input_size) != size:
                raise FamilyError(f"family '{self.family.name}': input_size {list(self.family.input_size)} "
                                  f"differs from the anchors' {list(size)}")
            return size
        size = self.family.input_size or (self.views[0].in_chans(), 224, 224)
        return (int(size[0]), int(size[1]), int(size[2]))

    def _check_grids(self) -> None:
        for s in self.stages:
            grids = [v.grid(s, self._input_size) for v in self.views]
            if len(set(grids)) != 1:
                raise FamilyError(f"family '{self.family.name}': stage {s} token grids differ between anchors "
                                  f"({', '.join(f'{a.name}: {g[0]}x{g[1]}' for a, g in zip(self.family.anchors, grids))}); "
                                  "stitched stages need equal grids")

    # ---- configurations ----
    @property
    def anchor_names(self) -> list[str]:
        return [a.name for a in self.family.anchors]

    @property
    def depth(self) -> list[list[int]]:
        """Per-anchor stage depths."""
        return [list(v.depths) for v in self.views]

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self._input_size

    @property
    def num_classes(self) -> int:
        return self.views[-1].num_classes()

    def config(self, cfg_id: int) -> StitchConfig:
        return config_by_id(self.configs, cfg_id, self.family.name)

    def describe(self, cfg: StitchConfig) -> str:
        """E.g. ``Ti[s2.0..1] -> S[s2.3..17]`` or ``anchor Ti``."""
        names = self.anchor_names
        if cfg.position is None or cfg.stage is None:
            return f"anchor {names[cfg.front]}"
        j, k = cfg.position
        s = cfg.stage
        last = self.views[cfg.end].depths[s] - 1
        return f"{names[cfg.front]}[s{s}.0..{j}] -> {names[cfg.end]}[s{s}.{k}..{last}]"

    def select(self, cfg_id: int) -> "StagedSNNet":
        self.config_id = self.config(cfg_id).id
        return self

    def stitch_layer(self, cfg: StitchConfig) -> StitchingLayer:
        assert cfg.stitch_layer is not None
        return self.layer_at(*cfg.stitch_layer)

    def layer_at(self, stage: int, pair: int, layer: int) -> StitchingLayer:
        """Stitching layer ``stitch_layers[stage][pair][layer]``."""
        pairs = cast(nn.ModuleList, self.stitch_layers[stage])
        return cast(StitchingLayer, cast(nn.ModuleList, pairs[pair])[layer])

    # ---- forward ----
    def forward(self, x: torch.Tensor, cfg_id: int | None = None) -> torch.Tensor:
        cfg = self.config(self.config_id if cfg_id is None else cfg_id)
        if cfg.position is None or cfg.stage is None:
            return self.anchors[cfg.front](x)
        front, end = self.views[cfg.front], self.views[cfg.end]
        s, (j, k) = cfg.stage, cfg.position
        x = front.stem(x)
        for i in range(s):
            x = front.stages[i](front.enter(i, x))
        x = front.enter(s, x)
        for blk in front.stages[s][: j + 1]:
            x = blk(x)
        x = to_layout(self.stitch_layer(cfg)(x), front.layout, end.layout)
        for blk in end.stages[s][k:]:
            x = blk(x)
        for i in range(s + 1, len(end.stages)):
            x = end.stages[i](end.enter(i, x))
        return end.head(x)

    def block_features(self, anchor: int, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Outputs of every block of ``anchor``, per stage, up to the last stitched stage (one pass,
        for LS init)."""
        view = self.views[anchor]
        x = view.stem(x)
        out: list[list[torch.Tensor]] = []
        for s in range(max(self.stages) + 1):
            x = view.enter(s, x)
            feats = []
            for blk in view.stages[s]:
                x = blk(x)
                feats.append(x)
            out.append(feats)
        return out

    def modules_of(self, cfg: StitchConfig) -> list[nn.Module]:
        """Modules counted in ``cfg``'s parameters. Swin follows the published rule, which leaves
        out the front anchor's patch-merging layers (they run, but are not counted)."""
        if cfg.position is None or cfg.stage is None:
            return [self.anchors[cfg.front]]
        front, end = self.views[cfg.front], self.views[cfg.end]
        s, (j, k) = cfg.stage, cfg.position
        count_enter = front.arch != "swin"
        mods: list[nn.Module] = list(front.stem_modules())
        for i in range(s + 1):
            if count_enter:
                mods += front.enter_modules(i)
            mods += list(front.stages[i][: (j + 1 if i == s else None)])
        mods.append(self.stitch_layer(cfg))
        mods += list(end.stages[s][k:])
        for i in range(s + 1, len(end.stages)):
            mods += [*end.enter_modules(i), end.stages[i]]
        return mods + end.head_modules()
