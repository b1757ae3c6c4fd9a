"""Training and evaluation of SN-Nets: data, Algorithm 1, DDP under torchrun, per-stitch evaluation.

Owns: :mod:`.data` (digits / ImageFolder), :mod:`.loop` (``train_anchors``, ``train_snnet``),
:mod:`.distributed` (process group, gradient sync), :mod:`.evaluate` (resumable results JSONL).
May import: torch, timm, scikit-learn, :mod:`snnet_export.model` and the top-level helpers.
"""
from __future__ import annotations

from .loop import ANCHOR_CONFIG, TrainConfig
from .recipes import train_anchors, train_snnet

__all__ = ["ANCHOR_CONFIG", "TrainConfig", "train_anchors", "train_snnet"]
