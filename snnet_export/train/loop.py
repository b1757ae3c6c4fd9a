"""The training loop: options, configuration sampling, AdamW + schedule, checkpointed epochs (:func:`fit`).

The two recipes built on it (anchors from scratch, SN-Net Algorithm 1) are in :mod:`.recipes`.

Determinism and resume: the data order, the sampled configurations and every random draw of an
epoch are pure functions of ``(seed, epoch, rank)``. Each epoch ends with a checkpoint
(``{'model': state_dict, 'optimizer', 'scheduler', 'epoch', ...}``, written atomically), so a
resumed run ends with exactly the weights of an uninterrupted one.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each rank joins a process group (NCCL on
GPUs, gloo on CPU), reads its own shard and samples its own configuration (``seed + rank``), as
published; gradients are averaged by hand over all parameters (:mod:`snnet_export.train.distributed`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .distributed import DistContext, barrier, reduce_batchnorm_stats, sync_gradients
from ..errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

SAMPLING = ("uniform", "flops-binned")
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (stored in its checkpoints).

    Attributes:
        epochs: passes over the training set; ``warmup_epochs`` of linear warm-up, then cosine
            decay per step to ``lr * min_lr_ratio``.
        batch_size: images per step and rank.
        lr, weight_decay: AdamW (no decay on biases, norms, class token and position embedding).
        sampling: ``uniform`` (published) or ``flops-binned`` (``flops_bins`` equal-width FLOPs
            bins, a bin uniformly, then a configuration in it uniformly).
        train_stitches_only: freeze the anchors and train only the stitching layers (anchor
            configurations are then never sampled). Default: full fine-tuning, as published.
        clip_grad: max gradient norm (``None`` disables clipping).
        amp: autocast precision on CUDA (``auto`` = bf16 where supported, else fp16); ignored on CPU.
        seed: seeds the data order, sampling and augmentation of every epoch.
        steps_per_epoch: cap on steps per epoch (short runs, tests); ``None`` = the whole set.
        ls_init_images: images of the LS-init batch (100 as published; 0 keeps the current weights).
        max_shift: random shift in pixels for in-memory data (digits); folders use timm transforms.
        workers: DataLoader worker processes for image folders.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    sampling: str = "uniform"
    flops_bins: int = 8
    train_stitches_only: bool = False
    clip_grad: float | None = 1.0
    amp: str = "auto"
    seed: int = 0
    steps_per_epoch: int | None = None
    ls_init_images: int = 100
    max_shift: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        bad = [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be finite numbers (got NaN or infinity)")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.flops_bins < 1:
            raise ValueError("epochs, batch_size, flops_bins and lr must be positive")


ANCHOR_CONFIG = TrainConfig(epochs=16, batch_size=32, lr=1e-3, warmup_epochs=1.0, ls_init_images=0)
"""Defaults for :func:`train_anchors`: the digits demo anchors reach about 86-88 / 94-96 / 93-95 %
val Top-1 (T / S / B) in 2-3 minutes on 2 CPU cores (benchmarks/train_digits.py). (The :class:`TrainConfig` defaults are tuned for the digits SN-Net too; on
ImageNet use the published recipe: 50 epochs, lr 1e-4 at batch 1024, 5 warm-up epochs.)"""


# ---- configuration sampling -------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigSampler:
    """Draws a configuration id: a bin uniformly, then an id in the bin uniformly."""

    bins: tuple[tuple[int, ...], ...]

    def draw(self, rng: Any) -> int:
        """One id, using ``rng`` (a ``numpy.random.Generator``)."""
        ids = self.bins[int(rng.integers(len(self.bins)))]
        return int(ids[int(rng.integers(len(ids)))])


def config_sampler(snnet: Any, sampling: str = "uniform", flops_bins: int = 8, ids: Sequence[int] | None = None,
                   flops: Mapping[int, int] | None = None) -> ConfigSampler:
    """A sampler over ``ids`` (default: all configurations of ``snnet``).

    ``uniform`` puts all ids in one bin. ``flops-binned`` splits the FLOPs range into
    ``flops_bins`` equal-width bins (empty bins dropped), so cheap and costly configurations are
    drawn equally often however many configurations each FLOPs range holds. ``flops`` (id ->
    FLOPs) saves counting them again.
    """
    ids = list(range(len(snnet.configs))) if ids is None else list(ids)
    if sampling == "uniform":
        return ConfigSampler((tuple(ids),))
    if sampling != "flops-binned":
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if flops is None:
        from ..model.flops import count_flops

        flops = {i: count_flops(snnet, snnet.config(i)) for i in ids}
    lo, hi = min(flops[i] for i in ids), max(flops[i] for i in ids)
    width = (hi - lo) / flops_bins or 1.0
    bins: list[list[int]] = [[] for _ in range(flops_bins)]
    for i in ids:
        bins[min(int((flops[i] - lo) / width), flops_bins - 1)].append(i)
    return ConfigSampler(tuple(tuple(b) for b in bins if b))


# ---- the training loop ------------------------------------------------------------------------

def _optimizer(params: Sequence[tuple[str, Any]], cfg: TrainConfig) -> Any:
    import torch

    no_decay = [p for n, p in params if p.ndim <= 1 or n.endswith(("pos_embed", "cls_token"))]
    decay = [p for n, p in params if not (p.ndim <= 1 or n.endswith(("pos_embed", "cls_token")))]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _autocast(cfg: TrainConfig, device: str) -> tuple[Any, Any]:
    """The autocast context and GradScaler for ``cfg.amp`` on ``device`` (both no-ops off CUDA)."""
    import torch

    if not device.startswith("cuda") or cfg.amp == "off":
        return contextlib.nullcontext, None
    bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported())
    dtype = torch.bfloat16 if bf16 else torch.float16
    scaler = None if bf16 else torch.amp.GradScaler("cuda")
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _epoch_rngs(seed: int, epoch: int, rank: int) -> tuple[Any, Any]:
    """The numpy generator (configuration draws) and torch generator (augmentation) of an epoch;
    also reseeds torch's global generator (dropout, drop-path)."""
    import numpy as np
    import torch

    torch.manual_seed(seed * 1_000_003 + epoch * 8_191 + rank)
    return np.random.default_rng([seed, epoch, rank]), torch.Generator().manual_seed(seed * 31 + epoch * 7 + rank)


def read_train_state(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pth``) written by :func:`fit`."""
    from ..model.checkpoint import torch_load

    state = torch_load(path, "training checkpoint")
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "epoch"} <= set(state):
        raise CheckpointError(f"{path} is not a training checkpoint (needs model, optimizer, scheduler "
                              "and epoch; a plain {'model': ...} file goes to --init instead)")
    return state


class _Optimization:
    """AdamW, the warm-up + cosine schedule and (fp16) loss scaling of one run, and its checkpoints."""

    def __init__(self, snnet: Any, cfg: TrainConfig, ctx: DistContext, steps: int) -> None:
        import torch

        named = [(n, p) for n, p in snnet.named_parameters() if p.requires_grad]
        self.snnet, self.cfg, self.ctx = snnet, cfg, ctx
        self.params = [p for _, p in named]
        self.opt = _optimizer(named, cfg)
        total, warm = steps * cfg.epochs, round(steps * cfg.warmup_epochs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, total, warm, cfg.min_lr_ratio))
        self.autocast, self.scaler = _autocast(cfg, ctx.device)

    def step(self, x: "torch.Tensor", y: "torch.Tensor", ids: list[int]) -> float:
        """Forward the configurations ``ids`` on one batch, sync gradients, update; returns the loss."""
        import torch
        import torch.nn.functional as F

        with self.autocast():
            losses = [F.cross_entropy(self.snnet(x, i), y) for i in ids]
            loss = torch.stack(losses).sum() if len(losses) > 1 else losses[0]
        self.opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        sync_gradients(self.params, self.ctx.world)
        if self.scaler:
            self.scaler.unscale_(self.opt)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], self.cfg.clip_grad)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def save(self, path: Path, epoch: int, history: list[dict[str, Any]]) -> None:
        """Write the training checkpoint (published ``model`` key + optimizer state) atomically."""
        import torch

        from ..fileio import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"model": self.snnet.state_dict(), "optimizer": self.opt.state_dict(),
                        "scheduler": self.sched.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None,
                        "epoch": epoch, "train_config": asdict(self.cfg), "history": history,
                        "world_size": self.ctx.world, "rng": {"torch": torch.get_rng_state()}}, tmp)

    def restore(self, path: Path) -> tuple[int, list[dict[str, Any]]]:
        """Load a training checkpoint; returns the finished epochs and the history so far."""
        state = read_train_state(path)
        if state.get("train_config") != asdict(self.cfg):
            log.warning("resuming %s, written with other options %s", path, state.get("train_config"))
        if state.get("world_size", 1) != self.ctx.world:
            log.warning("resuming %s on %d processes (written on %s): the data shards differ", path,
                        self.ctx.world, state.get("world_size"))
        self.snnet.load_state_dict(state["model"], strict=True)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        log.info("resumed from %s after epoch %d", path, state["epoch"])
        return int(state["epoch"]), list(state.get("history", []))


def fit(snnet: Any, splits: Any, cfg: TrainConfig, ctx: DistContext, state_path: Path,
        choose: Callable[[Any], list[int]], resume: Path | None = None,
        stop_after_epochs: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Train ``snnet`` on ``splits.train``: each step runs the ids ``choose(rng)`` returns and
    steps AdamW on the summed loss. Writes ``state_path`` after every epoch; returns the history."""
    from .data import random_shift, train_loader
    from ..progress import TRAIN_SECONDS, progress_bar

    steps = math.ceil(len(splits.train) // ctx.world / cfg.batch_size)
    steps = min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps
    run = _Optimization(snnet, cfg, ctx, steps)
    start, history = run.restore(resume) if resume is not None else (0, [])
    end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, start + stop_after_epochs)
    snnet.train()
    for epoch in range(start, end):
        t0 = time.perf_counter()
        rng, gen = _epoch_rngs(cfg.seed, epoch, ctx.rank)
        loader = train_loader(splits.train, cfg.batch_size, cfg.seed, epoch, ctx.rank, ctx.world, cfg.workers)
        bar = progress_bar(loader, f"epoch {epoch + 1}/{cfg.epochs}", unit="step", total=steps,
                           disable=not (progress and ctx.is_main), every_seconds=TRAIN_SECONDS)
        losses: list[float] = []
        for x, y in bar:
            if len(losses) >= steps:
                break
            if splits.shift_fill is not None and cfg.max_shift:
                x = random_shift(x, cfg.max_shift, splits.shift_fill, gen)
            losses.append(run.step(x.to(ctx.device), y.to(ctx.device), choose(rng)))
            bar.set_postfix_str(f"loss {losses[-1]:.3f}")
        bar.close()
        history.append({"epoch": epoch + 1, "loss": round(sum(losses) / max(1, len(losses)), 6), "steps": len(losses),
                        "lr": run.sched.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 2)})
        log.info("epoch %d/%d: loss %.4f (%d steps, %.1fs)", epoch + 1, cfg.epochs, history[-1]["loss"],
                 len(losses), history[-1]["seconds"])
        reduce_batchnorm_stats(snnet, ctx)
        if ctx.is_main:
            run.save(state_path, epoch + 1, history)
        barrier(ctx)
    snnet.eval()
    return history


# ---- entry points -----------------------------------------------------------------------------

def _auto_resume(state_path: Path, cfg: TrainConfig) -> Path | None:
    """``state_path`` if it holds an unfinished run with the same options, else ``None``."""
    if not state_path.is_file():
        return None
    state = read_train_state(state_path)
    if state.get("train_config") != asdict(cfg):
        log.warning("%s was written with other options; starting over", state_path)
        return None
    return state_path
