"""``snnet-export train`` and ``eval``: thin commands over :mod:`snnet_export.train`.

Registered on the group in :mod:`snnet_export.cli`, which turns library errors into one line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .params import SELECTION, FiniteFloat


@click.command("train")
@click.argument("family")
@click.option("--data", required=True, help="'digits' or a folder with train/ and val/ subfolders (ImageNet layout).")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Receives last.pth (every epoch), snnet.pth and summary.json.")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SN-Net checkpoint to start from ({'model': state_dict}, published layout).")
@click.option("--anchors-from-scratch", is_flag=True, help="First train the anchors from scratch (OUT_DIR/anchors.pth).")
@click.option("--anchor-epochs", type=click.IntRange(1), default=None, help="Epochs of anchor training [default: 16].")
@click.option("--epochs", type=click.IntRange(1), default=None, help="SN-Net training epochs [default: 20].")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=None, help="Peak AdamW learning rate [default: 3e-4].")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Images per step and process [default: 32].")
@click.option("--sampling", type=click.Choice(["uniform", "flops-binned"]), default="uniform", show_default=True,
              help="How each step picks its configuration.")
@click.option("--stitches-only", is_flag=True, help="Freeze the anchors; train the stitching layers only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(1), default=None, help="Cap steps per epoch (smoke runs).")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A last.pth to continue from [default: OUT_DIR/last.pth when it matches the options].")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 [default: cuda when available; torchrun: one GPU per rank].")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader workers (image folders).")
@click.option("--force", is_flag=True, help="Retrain even if the outputs exist.")
def train_cmd(family: str, data: str, out_dir: Path, init: Path | None, anchors_from_scratch: bool,
          anchor_epochs: int | None, epochs: int | None, lr: float | None, batch_size: int | None, sampling: str,
          stitches_only: bool, seed: int, steps_per_epoch: int | None, resume: Path | None, device: str | None,
          workers: int, force: bool) -> None:
    """Train an SN-Net of FAMILY (Algorithm 1: LS init, one sampled stitch per step); torchrun-ready."""
    import dataclasses
    import os
    import time

    from ..train import ANCHOR_CONFIG, TrainConfig, train_anchors, train_snnet

    if init and anchors_from_scratch:
        raise click.UsageError("--init and --anchors-from-scratch exclude each other")
    t0 = time.perf_counter()
    given: dict[str, Any] = dict(batch_size=batch_size, seed=seed, steps_per_epoch=steps_per_epoch, workers=workers)
    common = {k: v for k, v in given.items() if v is not None}
    if anchors_from_scratch:
        acfg = dataclasses.replace(ANCHOR_CONFIG, **common, epochs=anchor_epochs or ANCHOR_CONFIG.epochs)
        init = train_anchors(family, data, out_dir / "anchors.pth", acfg, device=device, force=force, progress=True)
    opts: dict[str, Any] = dict(epochs=epochs, lr=lr, sampling=sampling, train_stitches_only=stitches_only, **common)
    cfg = TrainConfig(**{k: v for k, v in opts.items() if v is not None})
    ckpt = train_snnet(family, init, data, out_dir, cfg, device=device, resume=resume, force=force, progress=True)
    if os.environ.get("RANK", "0") == "0":
        history = json.loads((out_dir / "summary.json").read_text())["history"] if ckpt.name == "snnet.pth" else []
        loss = f", last epoch loss {history[-1]['loss']:.4f}" if history else ""
        click.echo(f"trained {family} on {data}: {cfg.epochs} epochs, {cfg.sampling} sampling{loss}, "
                   f"{time.perf_counter() - t0:.0f} s; checkpoint {ckpt}")


@click.command("eval")
@click.argument("family")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True, help="'digits' or a folder with train/ and val/ subfolders.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Results JSONL; one line per configuration, ids already in it are skipped.")
@click.option("--configs", type=SELECTION, default=None, help="Ids to evaluate, e.g. 0,3,10-20 (default: all).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available].")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader workers (image folders).")
def eval_cmd(family: str, checkpoint: Path, data: str, out: Path, configs: str | None, batch_size: int,
             device: str | None, workers: int) -> None:
    """Top-1/Top-5/loss, FLOPs and params of every configuration of FAMILY at CHECKPOINT on the val set."""
    from ..train.evaluate import evaluate_configs

    recs = evaluate_configs(family, checkpoint, data, out, configs, batch_size=batch_size, device=device,
                            workers=workers, progress=True)
    best = max(recs, key=lambda r: r["acc1"])
    click.echo(f"{len(recs)} configurations in {out}: Top-1 {min(r['acc1'] for r in recs):.2f}-{best['acc1']:.2f}% "
               f"(best id {best['cfg_id']}, {best['path']})")
