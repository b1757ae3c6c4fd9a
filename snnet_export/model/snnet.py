"""The SNNet module: anchors, stitching layers, and the forward of any configuration.

The state-dict layout is the published one (``anchors.{i}.<timm keys>`` and
``stitch_layers.{p}.{l}.transform.{weight,bias}``) so ziplab's ``snnet_deit.pth`` loads strictly.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, Sequence, cast

import torch
from torch import nn

from ..errors import CheckpointError, FamilyError, first_line
from .checkpoint import read_state_dict
from .family import FamilySpec, get_family
from .layers import StitchingLayer
from .stitching import StitchConfig, anchor_pairs, config_by_id, enumerate_configs, num_stitch_layers

log = logging.getLogger(__name__)


# ---- ViT anchor pieces (timm VisionTransformer API) -------------------------------------------

class ViTAnchor(Protocol):
    """The part of timm's ``VisionTransformer`` an SN-Net uses (:func:`_check_vit` checks it)."""

    patch_embed: Any  # timm PatchEmbed: num_patches, grid_size, img_size, proj (a Conv2d)
    patch_drop: nn.Module
    norm_pre: nn.Module
    blocks: nn.Sequential
    norm: nn.Module
    head: nn.Module
    num_classes: int
    num_features: int

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor) -> torch.Tensor: ...


def as_vit(anchor: nn.Module) -> ViTAnchor:
    """``anchor`` seen through the timm ViT surface (a module's submodules are dynamic attributes)."""
    return cast(ViTAnchor, anchor)


def _check_vit(anchor: nn.Module, name: str) -> None:
    needed = ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head")
    missing = [a for a in needed if not hasattr(anchor, a)]
    if missing:
        raise FamilyError(
            f"anchor '{name}' ({type(anchor).__name__}) is not a timm ViT (lacks {missing}); "
            "this version stitches ViT-style anchors (VisionTransformer / DeiT) only"
        )


def vit_embed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch embedding + class token + position embedding: ``[B,C,H,W] -> [B,N,D]``."""
    anchor = as_vit(module)
    x = anchor.patch_embed(x)
    x = anchor._pos_embed(x)
    x = anchor.patch_drop(x)
    return anchor.norm_pre(x)


def vit_head(module: nn.Module, x: torch.Tensor, apply_norm: bool) -> torch.Tensor:
    """Pool + head on ``[B,N,D]`` tokens; ``apply_norm`` adds the final LayerNorm first."""
    anchor = as_vit(module)
    if apply_norm:
        x = anchor.norm(x)
    return anchor.forward_head(x)


def anchor_width(anchor: nn.Module) -> int:
    return int(getattr(anchor, "embed_dim", None) or as_vit(anchor).num_features)


def anchor_tokens(anchor: nn.Module) -> int:
    return int(as_vit(anchor).patch_embed.num_patches) + int(getattr(anchor, "num_prefix_tokens", 1))


class SNNet(nn.Module):
    """A stitchable network over ``anchors`` (timm ViTs of equal depth, small to large).

    ``forward(x)`` runs the selected configuration (:meth:`select`), or ``forward(x, cfg_id)``.
    """

    def __init__(self, family: FamilySpec, anchors: Sequence[nn.Module]) -> None:
        super().__init__()
        for spec, anchor in zip(family.anchors, anchors):
            _check_vit(anchor, spec.name)
        if family.stitch_kind != "linear":
            raise FamilyError(f"family '{family.name}': '{family.stitch_kind}' stitching is for CNN "
                              "feature maps; ViT anchors are stitched with 'linear' layers")
        vits = [as_vit(a) for a in anchors]
        depths = {len(a.blocks) for a in vits}
        if len(depths) != 1:
            raise FamilyError(f"family '{family.name}': anchors must have equal depth, got {sorted(depths)}")
        tokens = {anchor_tokens(a) for a in anchors}
        grids = {(tuple(a.patch_embed.grid_size), tuple(a.patch_embed.img_size)) for a in vits}
        if len(tokens) != 1 or len(grids) != 1:
            raise FamilyError(f"family '{family.name}': anchors must see the same token grid (input size, "
                              f"patch grid and prefix tokens), got tokens {sorted(tokens)}, "
                              f"(grid, input) {sorted(grids)}")
        classes = {int(a.num_classes) for a in vits}
        if len(classes) != 1:
            raise FamilyError(f"family '{family.name}': anchors must have the same num_classes (every "
                              f"stitch ends in one anchor's head), got {sorted(classes)}")
        self.family = family
        self.depth = depths.pop()
        self.anchors = nn.ModuleList(anchors)
        n_layers = num_stitch_layers(self.depth, family.kernel_size, family.stride)
        self.stitch_layers = nn.ModuleList(
            nn.ModuleList(StitchingLayer(anchor_width(anchors[a]), anchor_width(anchors[b]))
                          for _ in range(n_layers))
            for a, b in anchor_pairs(len(anchors), family.nearest)
        )
        self.configs: tuple[StitchConfig, ...] = enumerate_configs(
            len(anchors), self.depth, family.kernel_size, family.stride, family.nearest)
        self.config_id = 0

    # ---- configurations ----
    def anchor(self, i: int) -> ViTAnchor:
        """Anchor ``i`` (``self.anchors[i]``) as a timm ViT."""
        return as_vit(self.anchors[i])

    @property
    def anchor_names(self) -> list[str]:
        return [a.name for a in self.family.anchors]

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the anchors' input."""
        pe = self.anchor(0).patch_embed
        h, w = pe.img_size
        return (int(pe.proj.in_channels), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return int(self.anchor(-1).num_classes)

    def config(self, cfg_id: int) -> StitchConfig:
        return config_by_id(self.configs, cfg_id, self.family.name)

    def describe(self, cfg: StitchConfig) -> str:
        return cfg.describe(self.anchor_names, self.depth)

    def select(self, cfg_id: int) -> "SNNet":
        """Make ``forward(x)`` run configuration ``cfg_id``; returns self."""
        self.config_id = self.config(cfg_id).id
        return self

    def stitch_layer(self, cfg: StitchConfig) -> StitchingLayer:
        assert cfg.stitch_layer is not None
        p, layer = cfg.stitch_layer
        return cast(StitchingLayer, cast(nn.ModuleList, self.stitch_layers[p])[layer])

    # ---- forward ----
    def forward(self, x: torch.Tensor, cfg_id: int | None = None) -> torch.Tensor:
        cfg = self.config(self.config_id if cfg_id is None else cfg_id)
        if cfg.position is None:
            return self.anchors[cfg.front](x)
        j, k = cfg.position
        front, end = self.anchor(cfg.front), self.anchor(cfg.end)
        x = vit_embed(self.anchors[cfg.front], x)
        for blk in front.blocks[: j + 1]:
            x = blk(x)
        x = self.stitch_layer(cfg)(x)
        for blk in end.blocks[k:]:
            x = blk(x)
        return vit_head(self.anchors[cfg.end], x, apply_norm=self.family.head == "v2")

    def modules_of(self, cfg: StitchConfig) -> list[nn.Module]:
        """The modules whose parameters configuration ``cfg`` uses (for counting and freezing)."""
        front, end = self.anchor(cfg.front), self.anchor(cfg.end)
        if cfg.position is None:
            return [self.anchors[cfg.front]]
        j, k = cfg.position
        return [front.patch_embed, *front.blocks[: j + 1], self.stitch_layer(cfg),
                *end.blocks[k:], end.head, end.norm]


# ---- building and loading -------------------------------------------------------------------

def anchors_from_family(family: FamilySpec, device: str | torch.device = "cpu") -> list[nn.Module]:
    """Create the family's timm anchors (random init unless a spec asks for weights)."""
    import timm

    anchors = []
    for spec in family.anchors:
        if not timm.is_model(spec.model):
            raise FamilyError(f"family '{family.name}': anchor '{spec.name}' names unknown timm model "
                              f"'{spec.model}' (see timm.list_models())")
        try:
            with torch.device(device):
                model = timm.create_model(spec.model, pretrained=spec.pretrained, **dict(spec.kwargs))
        except (TypeError, ValueError, AssertionError, RuntimeError) as exc:  # e.g. heads not dividing the width
            raise FamilyError(f"family '{family.name}': anchor '{spec.name}' ({spec.model}) "
                              f"rejects its kwargs {dict(spec.kwargs)}: {first_line(exc)}") from None
        if spec.checkpoint:
            _load_anchor(model, spec.checkpoint, f"anchor '{spec.name}' of family '{family.name}'")
        anchors.append(model.eval())
    return anchors


def _load_anchor(model: nn.Module, path: str, what: str) -> None:
    """Load one anchor's weights (official Swin/LeViT/ResNet layouts are mapped to timm 1.0)."""
    from .anchors import arch_of
    from .published import anchor_from_official

    arch = arch_of(model)
    sd = read_state_dict(path)
    load_state(model, anchor_from_official(sd, arch, model) if arch else sd, what=what, source=path)


def snnet_from_family(family: FamilySpec | str, device: str | torch.device = "cpu",
                      seed: int | None = 0) -> Any:
    """Build an SN-Net for ``family`` (a spec, registered name or YAML path): an :class:`SNNet`
    for ViT families, a :class:`.staged.StagedSNNet` for Swin/ResNet/LeViT kinds."""
    family = get_family(family)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        anchors = anchors_from_family(family, device)
        if family.kind == "vit":
            return SNNet(family, anchors).eval()
        from .staged import StagedSNNet

        return StagedSNNet(family, anchors).eval()


def _short(keys: Sequence[str], n: int = 6) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state(model: nn.Module, path_or_sd: str | Path | dict[str, torch.Tensor], what: str,
               source: str | None = None) -> None:
    """Strictly load a state dict into ``model``; one error names every mismatch."""
    sd = path_or_sd if isinstance(path_or_sd, dict) else read_state_dict(path_or_sd)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}"
                    for k in set(own) & set(sd) if sd[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label}: {_short(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if keys]
        src = source or (path_or_sd if not isinstance(path_or_sd, dict) else "state dict")
        raise CheckpointError(f"checkpoint {src} does not match {what}: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def load_checkpoint(snnet: Any, path: str | Path) -> Any:
    """Load a checkpoint in the published layout strictly into ``snnet``.

    Staged families (Swin, ResNet, LeViT) map the official key layouts to timm 1.0 first
    (:mod:`.published`); LeViT's attention-bias caches are cleared after loading.
    """
    n_layers = sum(1 for m in snnet.stitch_layers.modules() if isinstance(m, StitchingLayer))
    what = (f"family '{snnet.family.name}' ({len(snnet.anchors)} anchors {'/'.join(snnet.anchor_names)}, "
            f"{n_layers} stitching layers)")
    if isinstance(snnet, SNNet):
        load_state(snnet, path, what=what)
        return snnet
    from .published import snnet_from_official

    sd = snnet_from_official(read_state_dict(path), snnet)
    load_state(snnet, sd, what=what, source=str(path))
    snnet.train(snnet.training)  # clears LeViT's cached attention biases (filled before the load)
    return snnet


def save_checkpoint(snnet: SNNet, path: str | Path, **extra: object) -> None:
    """Write ``{'model': state_dict, **extra}`` atomically (the published layout)."""
    from ..fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": snnet.state_dict(), **extra}, tmp)
