"""Least-squares initialisation of stitching layers, as published.

For position (j, k) of pair (a, b): X = front block j's output, Y = the end anchor's input to
block k (the embedding for k = 0), both flattened over batch and tokens (CLS included, no
centring). Solve ``[X, 1] A = Y`` with the pseudo-inverse; the last row of A is the bias. A layer
shared by several positions takes the mean of their solutions.

Staged families (Swin, ResNet, LeViT; SNNET_FAMILIES.md 1.5) as the official scripts run it: X = the
front's output of block j of stage s, Y = the end's output of block k-1, NCHW maps flattened as NHWC
rows, the model in **train mode** (batch-statistics BatchNorm, which also updates running
statistics; DropPath active), and the pinv solved in float32 on the CPU.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING

import torch

from .snnet import SNNet, as_vit, vit_embed

if TYPE_CHECKING:
    from .staged import StagedSNNet

log = logging.getLogger(__name__)


@torch.no_grad()
def block_features(anchor: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """``[embedding, block 0 out, ..., block depth-1 out]``, each ``[B, N, D]``."""
    x = vit_embed(anchor, images)
    feats = [x]
    for blk in as_vit(anchor).blocks:
        x = blk(x)
        feats.append(x)
    return feats


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``[x, 1] A = y`` by pseudo-inverse (float64); returns weight ``[Dy, Dx]`` and bias ``[Dy]``."""
    x = x.reshape(-1, x.shape[-1]).double()  # [B*N, Dx]
    y = y.reshape(-1, y.shape[-1]).double()  # [B*N, Dy]
    x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # [B*N, Dx+1]
    a = torch.linalg.pinv(x1) @ y  # [Dx+1, Dy]
    return a[:-1].T.contiguous(), a[-1].contiguous()


@torch.no_grad()
def ls_init_(snnet: SNNet | StagedSNNet, images: torch.Tensor) -> None:
    """Initialise every stitching layer of ``snnet`` in place from one batch of ``images``."""
    if not isinstance(snnet, SNNet):
        return staged_ls_init_(snnet, images)
    was_training = snnet.training
    snnet.eval()
    feats: dict[int, list[torch.Tensor]] = {}
    by_layer: dict[tuple[int, ...], list[tuple[int, int, int, int]]] = defaultdict(list)
    layers = {}
    for cfg in snnet.configs:
        if cfg.stitch_layer is not None and cfg.position is not None:
            by_layer[cfg.stitch_layer].append((cfg.front, cfg.end, *cfg.position))
            layers[cfg.stitch_layer] = snnet.stitch_layer(cfg)
    for key, positions in by_layer.items():
        ws, bs = [], []
        for a, b, j, k in positions:
            for idx in (a, b):
                if idx not in feats:
                    feats[idx] = block_features(snnet.anchors[idx], images)
            w, bias = least_squares(feats[a][j + 1], feats[b][k])
            ws.append(w)
            bs.append(bias)
        layers[key].set_weights(torch.stack(ws).mean(0), torch.stack(bs).mean(0))
    log.info("LS-initialised %d stitching layers from %d images", len(by_layer), len(images))
    snnet.train(was_training)


def least_squares_f32(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official solve: ``[x, 1] A = y`` with ``torch.linalg.pinv`` in float32 on the CPU."""
    x, y = x.float().cpu(), y.float().cpu()  # [rows, Dx], [rows, Dy]
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)  # [rows, Dx+1]
    a = torch.linalg.pinv(x1) @ y  # [Dx+1, Dy]
    return a[:-1].T.contiguous(), a[-1].contiguous()


@torch.no_grad()
def staged_ls_init_(snnet: StagedSNNet, images: torch.Tensor) -> None:
    """LS init of a staged SN-Net (Swin/ResNet/LeViT) in place, in train mode as published."""
    from .anchors import rows

    was_training = snnet.training
    snnet.train()
    by_layer: dict[tuple[int, ...], list[tuple[int, int, int, int, int]]] = defaultdict(list)
    for cfg in snnet.configs:
        if cfg.stitch_layer is not None and cfg.position is not None and cfg.stage is not None:
            by_layer[cfg.stitch_layer].append((cfg.stage, cfg.front, cfg.end, *cfg.position))
    feats: dict[int, list[list[torch.Tensor]]] = {}
    for key, positions in by_layer.items():
        ws, bs = [], []
        for s, a, b, j, k in positions:
            for idx in (a, b):
                if idx not in feats:
                    feats[idx] = snnet.block_features(idx, images)
            x = rows(feats[a][s][j], snnet.views[a].layout)
            y = rows(feats[b][s][k - 1], snnet.views[b].layout)
            w, bias = least_squares_f32(x, y)
            ws.append(w)
            bs.append(bias)
        snnet.layer_at(*key).set_weights(torch.stack(ws).mean(0), torch.stack(bs).mean(0))
    log.info("LS-initialised %d stitching layers from %d images", len(by_layer), len(images))
    snnet.train(was_training)
