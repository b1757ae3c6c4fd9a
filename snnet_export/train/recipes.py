"""The two training recipes: anchors from scratch, and SN-Net training as published (Algorithm 1).

:func:`train_snnet` LS-initialises the stitching layers from one batch of training images, then
each step samples one configuration, runs it and updates every parameter it used (full
fine-tuning by default). :func:`train_anchors` trains a family's anchors from scratch (all anchors
on every batch), leaving the stitching layers untouched. Both run the same sequence
(:func:`_run`): build the SN-Net, load the data, broadcast the start state, :func:`~.loop.fit`,
check that the ranks agree, and let the main rank write the results.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from ..fileio import check_writable
from .distributed import barrier, broadcast_state, check_ranks_agree, distributed
from .loop import ANCHOR_CONFIG, TrainConfig, _auto_resume, config_sampler, fit

log = logging.getLogger(__name__)


def _run(family: Any, data: str | Path, cfg: TrainConfig, device: str | None, state_path: Path,
         resume: Path | None, progress: bool, prepare: Callable[[Any, Any, Any], Callable[[Any], list[int]]],
         finish: Callable[[Any, Any, Any, dict[str, Any]], None], stop_after_epochs: int | None = None) -> list:
    """The sequence both recipes share; returns the training history.

    ``prepare(snnet, splits, ctx)`` readies the network (checkpoint, LS init, freezing) and returns
    the per-step configuration picker; ``finish(snnet, splits, ctx, run)`` runs on the main rank
    after training with ``run = {history, rank_state_sha256, seconds, world_size}``.
    """
    from ..model.snnet import snnet_from_family
    from .data import load_data

    with distributed(device) as ctx:
        snnet = snnet_from_family(family, device=ctx.device, seed=cfg.seed)
        splits = load_data(data, snnet)
        pick = prepare(snnet, splits, ctx)
        broadcast_state(snnet, ctx)
        t0 = time.perf_counter()
        history = fit(snnet, splits, cfg, ctx, state_path, pick, resume=resume,
                      stop_after_epochs=stop_after_epochs, progress=progress)
        digests = check_ranks_agree(snnet, ctx)
        if ctx.is_main:
            finish(snnet, splits, ctx, {"history": history, "rank_state_sha256": digests, "world_size": ctx.world,
                                        "seconds": round(time.perf_counter() - t0, 1)})
        barrier(ctx)
    return history


def train_anchors(family: Any, data: str | Path = "digits", out: str | Path = "anchors.pth",
                  config: TrainConfig | None = None, *, epochs: int | None = None, seed: int | None = None,
                  device: str | None = None, force: bool = False, progress: bool = False) -> Path:
    """Train ``family``'s anchors from scratch on ``data`` (every anchor on every batch).

    Writes ``out`` in the published layout (``{'model': state_dict}``, stitching layers left at
    their initialisation) and ``out`` with suffix ``.json``: each anchor's validation Top-1/Top-5/
    loss and the training history. An existing ``out`` is reused unless ``force``; an interrupted
    run resumes from ``<out>.last.pth``.

    Returns:
        The checkpoint path.
    """
    from ..fileio import write_json_atomic
    from ..model.snnet import save_checkpoint
    from .data import eval_loader
    from .evaluate import evaluate_config

    out = Path(out)
    check_writable(out, "anchor checkpoint", DataError, folder=False)
    cfg = config or ANCHOR_CONFIG
    cfg = replace(cfg, epochs=cfg.epochs if epochs is None else epochs, seed=cfg.seed if seed is None else seed)
    if out.is_file() and not force:
        log.info("anchors %s exist; reusing them (force to retrain)", out)
        return out
    state_path = out.with_suffix(".last.pth")

    def prepare(snnet: Any, splits: Any, ctx: Any) -> Callable[[Any], list[int]]:
        return lambda rng: list(range(len(snnet.anchors)))

    def finish(snnet: Any, splits: Any, ctx: Any, run: dict[str, Any]) -> None:
        loader = eval_loader(splits.val, 256)
        accs = [{"name": name, **evaluate_config(snnet, i, loader, ctx.device)}
                for i, name in enumerate(snnet.anchor_names)]
        save_checkpoint(snnet, out)
        write_json_atomic(out.with_suffix(".json"), {
            "family": snnet.family.name, "data": str(data), "anchors": accs, "train_config": asdict(cfg),
            "world_size": run["world_size"], "seconds": run["seconds"], "history": run["history"],
            "rank_state_sha256": run["rank_state_sha256"]})
        log.info("anchors: %s", ", ".join(f"{a['name']} {a['acc1']:.2f}%" for a in accs))

    _run(family, data, cfg, device, state_path, None if force else _auto_resume(state_path, cfg), progress,
         prepare, finish)
    return out


def train_snnet(family: Any, init_checkpoint: str | Path | None, data: str | Path, out_dir: str | Path,
                config: TrainConfig | None = None, *, device: str | None = None, resume: str | Path | None = None,
                force: bool = False, stop_after_epochs: int | None = None, progress: bool = False) -> Path:
    """Train an SN-Net (Algorithm 1): LS init, then one sampled configuration per step and rank.

    Args:
        family: registered name, YAML path or spec.
        init_checkpoint: SN-Net weights to start from (published layout, e.g. from
            :func:`train_anchors`); ``None`` keeps the family's own anchors (spec checkpoints or
            ``pretrained``).
        data: ``"digits"`` or an image folder with ``train/`` and ``val/``.
        out_dir: receives ``last.pth`` after every epoch (weights + optimizer, scheduler, epoch),
            ``snnet.pth`` (``{'model': state_dict}``) and ``summary.json`` when done.
        resume: a ``last.pth`` to continue from; by default an unfinished ``out_dir/last.pth``
            with the same options is resumed.
        force: retrain even if ``out_dir/snnet.pth`` exists.
        stop_after_epochs: leave after this many epochs (resume later), for time-sliced jobs.

    Returns:
        ``out_dir/snnet.pth``, or ``out_dir/last.pth`` if stopped early.
    """
    from ..fileio import write_json_atomic
    from ..model.lsinit import ls_init_
    from ..model.snnet import load_checkpoint, save_checkpoint
    from .data import first_images

    cfg = config or TrainConfig()
    out_dir = Path(out_dir)
    check_writable(out_dir, "output folder", DataError, folder=True)
    final, state_path = out_dir / "snnet.pth", out_dir / "last.pth"
    if final.is_file() and resume is None and not force:
        log.info("%s exists; reusing it (force to retrain)", final)
        return final
    resume_path = Path(resume) if resume else (None if force else _auto_resume(state_path, cfg))
    bins: list[Any] = []

    def prepare(snnet: Any, splits: Any, ctx: Any) -> Callable[[Any], list[int]]:
        if init_checkpoint and resume_path is None:
            load_checkpoint(snnet, init_checkpoint)
        if resume_path is None and cfg.ls_init_images:
            ls_init_(snnet, first_images(splits.train_eval, cfg.ls_init_images, cfg.seed).to(ctx.device))
        if cfg.train_stitches_only:
            snnet.anchors.requires_grad_(False)
        ids = [c.id for c in snnet.configs if not (cfg.train_stitches_only and c.is_anchor)]
        sampler = config_sampler(snnet, cfg.sampling, cfg.flops_bins, ids)
        bins[:] = [list(b) for b in sampler.bins]
        return lambda rng: [sampler.draw(rng)]

    def finish(snnet: Any, splits: Any, ctx: Any, run: dict[str, Any]) -> None:
        if not (run["history"] and run["history"][-1]["epoch"] == cfg.epochs):
            return  # stopped early: last.pth holds the state
        save_checkpoint(snnet, final)
        write_json_atomic(out_dir / "summary.json", {
            "family": snnet.family.name, "data": str(data), "init": str(init_checkpoint) if init_checkpoint else None,
            "train_config": asdict(cfg), "world_size": run["world_size"], "sampler_bins": bins,
            "seconds_this_run": run["seconds"], "history": run["history"],
            "rank_state_sha256": run["rank_state_sha256"], "checkpoint": final.name})

    history = _run(family, data, cfg, device, state_path, resume_path, progress, prepare, finish,
                   stop_after_epochs=stop_after_epochs)
    done = bool(history) and history[-1]["epoch"] == cfg.epochs
    return final if done else state_path
