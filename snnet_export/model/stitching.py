"""Stitch configurations: positions from the sliding window, and the published id order.

For the DeiT-Ti/S/B family this reproduces the published table exactly: ids 0-2 are the anchors,
then every (front, end) anchor pair in order, each with its positions in enumeration order.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError, FamilyError


@dataclass(frozen=True)
class StitchConfig:
    """One sub-network of an SN-Net.

    Attributes:
        id: the configuration id (published order).
        front, end: anchor indices; equal for a plain anchor.
        position: ``(j, k)``: run front blocks ``0..j``, then end blocks ``k..depth-1``;
            ``None`` for a plain anchor.
        stitch_layer: ``(pair, layer)`` index into ``SNNet.stitch_layers`` (ViT families), or
            ``(S, pair, layer)`` for staged families (Swin, ResNet, LeViT); ``None`` for anchors.
        stage: the stitched stage of a staged family (blocks ``j``/``k`` count within it).
    """

    id: int
    front: int
    end: int
    position: tuple[int, int] | None = None
    stitch_layer: tuple[int, ...] | None = None
    stage: int | None = None

    @property
    def is_anchor(self) -> bool:
        return self.position is None

    def describe(self, anchor_names: Sequence[str], depth: int) -> str:
        """Human-readable path, e.g. ``Ti[0..3] -> S[4..11]`` or ``anchor Ti``."""
        if self.position is None:
            return f"anchor {anchor_names[self.front]}"
        j, k = self.position
        return f"{anchor_names[self.front]}[0..{j}] -> {anchor_names[self.end]}[{k}..{depth - 1}]"


def window_positions(depth: int, kernel_size: int = 2, stride: int = 1) -> list[tuple[tuple[int, int], int]]:
    """Stitching positions and their layer index for anchors of equal depth.

    Slides a window of ``kernel_size`` block indices with ``stride``; each ordered pair ``(j, k)``
    inside the window not seen before becomes a position, and each window that adds a position
    opens a new stitching layer shared by the positions it added.

    Returns:
        ``[((j, k), layer), ...]`` in enumeration order.
    """
    seen: set[tuple[int, int]] = set()
    out: list[tuple[tuple[int, int], int]] = []
    layer = -1
    for start in range(0, depth, stride):
        window = range(start, min(start + kernel_size, depth))
        new = [(j, k) for j in window for k in window if (j, k) not in seen]
        if new:
            layer += 1
            seen.update(new)
            out.extend((pos, layer) for pos in new)
    return out


def anchor_pairs(num_anchors: int, nearest: bool = True) -> list[tuple[int, int]]:
    """Ordered (front, end) anchor pairs that get stitching layers, fast to slow."""
    if nearest:
        return [(i, i + 1) for i in range(num_anchors - 1)]
    return list(itertools.combinations(range(num_anchors), 2))


def enumerate_configs(
    num_anchors: int, depth: int, kernel_size: int = 2, stride: int = 1, nearest: bool = True
) -> tuple[StitchConfig, ...]:
    """All configurations in published id order: anchors first, then pairs with their positions."""
    if depth < 1:
        raise FamilyError(f"anchors must have at least one block, got depth {depth}")
    configs = [StitchConfig(id=i, front=i, end=i) for i in range(num_anchors)]
    positions = window_positions(depth, kernel_size, stride)
    for p, (a, b) in enumerate(anchor_pairs(num_anchors, nearest)):
        for pos, layer in positions:
            configs.append(StitchConfig(len(configs), a, b, pos, (p, layer)))
    return tuple(configs)


def num_stitch_layers(depth: int, kernel_size: int = 2, stride: int = 1) -> int:
    """Stitching layers per anchor pair."""
    positions = window_positions(depth, kernel_size, stride)
    return positions[-1][1] + 1 if positions else 0


def stage_positions(front_depth: int, end_depth: int, kernel_size: int = 2,
                    stride: int = 1) -> list[tuple[tuple[int, int], int]]:
    """Positions ``(j, k)`` and layer ids inside one stage of a staged family (Swin/ResNet/LeViT).

    Paired (equal depths): a sliding window keeping only pairs ``j < k``; each window that adds a
    pair opens a layer (kernel 2: ``(l, l+1)`` on layer ``l``). Unpaired (front shallower): end
    block ``i`` maps to front block ``m(i) = floor(i*F/E)``; positions are ``(m(i), i)`` with
    ``i > m(i)``, and the n-th position takes layer ``m(n)`` (the published layer-id quirk).
    """
    if front_depth > end_depth:
        raise FamilyError(f"a stitched stage has front depth {front_depth} > end depth {end_depth}: "
                          "list anchors from shallowest to deepest")
    if front_depth == end_depth:
        seen: set[tuple[int, int]] = set()
        out: list[tuple[tuple[int, int], int]] = []
        layer = -1
        for start in range(0, end_depth, stride):
            window = range(start, min(start + kernel_size, end_depth))
            new = [(a, b) for a in window for b in window if a < b and (a, b) not in seen]
            if new:
                layer += 1
                seen.update(new)
                out.extend((pos, layer) for pos in new)
        return out
    mapping = [i * front_depth // end_depth for i in range(end_depth)]  # legacy 'nearest' resize
    positions = [(m, i) for i, m in enumerate(mapping) if i > m]
    return [(pos, mapping[n]) for n, pos in enumerate(positions)]


def stage_layer_count(front_depth: int, end_depth: int, kernel_size: int = 2, stride: int = 1) -> int:
    """Stitching layers created for one pair in one stage (unpaired: one per front block)."""
    if front_depth < end_depth:
        return front_depth
    positions = stage_positions(front_depth, end_depth, kernel_size, stride)
    return positions[-1][1] + 1 if positions else 0


def enumerate_staged_configs(depths: Sequence[Sequence[int]], stages: Sequence[int], kernel_size: int = 2,
                             stride: int = 1) -> tuple[StitchConfig, ...]:
    """Published id order of a staged family: anchors, then per stitched stage, per neighbour pair,
    its positions. ``depths[a][s]`` is anchor ``a``'s depth in stage ``s``."""
    configs = [StitchConfig(id=i, front=i, end=i) for i in range(len(depths))]
    for S, s in enumerate(stages):
        for p in range(len(depths) - 1):
            for pos, layer in stage_positions(depths[p][s], depths[p + 1][s], kernel_size, stride):
                configs.append(StitchConfig(len(configs), p, p + 1, pos, (S, p, layer), stage=s))
    return tuple(configs)


def config_by_id(configs: Sequence[StitchConfig], cfg_id: int, family: str) -> StitchConfig:
    """``configs[cfg_id]``, or a :class:`ConfigError` naming the family's id range."""
    if not 0 <= int(cfg_id) < len(configs):
        raise ConfigError(f"configuration {cfg_id} does not exist: family '{family}' "
                          f"has ids 0-{len(configs) - 1}")
    return configs[int(cfg_id)]
