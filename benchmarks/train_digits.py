"""Train the digits demo SN-Net end to end and measure what the paper's ablations measure.

1. Train the demo family's three anchors from scratch (``train.ANCHOR_CONFIG``): each anchor's
   validation Top-1 and the wall time.
2. Before any SN-Net training: every stitch's validation Top-1 with the stitching layers at their
   default (random, ``nn.Linear``) initialisation, then after least-squares init from 100 training
   images (the paper's LS-init ablation): mean and median over the 68 stitches.
3. A short Algorithm-1 run (``train.TrainConfig`` below), then all 71 configurations evaluated:
   how many stitches land between their two anchors' Top-1 (rule in ``RULE``), with the full
   per-stitch table.

Writes ``benchmarks/results/train_digits.json`` and ``.md`` with the environment (CPU, threads,
library versions, load average) and wall times. Run from the repository root::

    .venv/bin/python benchmarks/train_digits.py [--epochs 12] [--threads 2] [--workdir DIR]

``--family digits-cnn`` / ``--family digits-swin`` run the same protocol on the ResNet-18/50-shaped
and Swin digits families (results ``train_digits-cnn.json`` / ``train_digits-swin.json``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

# The benchmark machine is shared: spinning OpenMP threads collapse (10-20x) when another process
# holds a core, so threads sleep while waiting. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"
RULE = ("a stitch from anchor a to anchor b counts as 'between' when its Top-1 lies in "
        "[min(Top-1 a, Top-1 b) - 1, max(Top-1 a, Top-1 b) + 1] (percentage points); 'strictly between' "
        "drops the 1 pp tolerance")


LABELS = {"train_anchors_s": "train the anchors from scratch", "ls_ablation_s": "LS-init ablation (every stitch evaluated twice)",
          "train_snnet_s": "SN-Net training (Algorithm 1, LS init included)", "eval_71_s": "evaluate every configuration"}


def _environment(threads: int) -> dict:
    import sklearn
    import timm
    import torch

    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "scikit_learn": sklearn.__version__,
            "device": "cpu", "precision": "fp32", "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "loadavg_start": list(os.getloadavg())}


def _stitch_accuracies(snnet, loader) -> dict[int, float]:
    from snnet_export.train.evaluate import evaluate_config

    return {c.id: evaluate_config(snnet, c.id, loader)["acc1"] for c in snnet.configs if not c.is_anchor}


def _summary(acc: dict[int, float]) -> dict:
    values = list(acc.values())
    return {"mean": round(statistics.mean(values), 2), "median": round(statistics.median(values), 2),
            "min": round(min(values), 2), "max": round(max(values), 2)}


def _between(snnet, acc: dict[int, float]) -> tuple[list[dict], int, int]:
    from snnet_export.train.evaluate import between_anchors

    rows, loose, strict = [], 0, 0
    for c in snnet.configs:
        if c.is_anchor:
            continue
        inside, strictly = between_anchors(acc[c.id], acc[c.front], acc[c.end])
        loose, strict = loose + inside, strict + strictly
        rows.append({"cfg_id": c.id, "path": snnet.describe(c), "acc1": acc[c.id], "front_acc1": acc[c.front],
                     "end_acc1": acc[c.end], "between": inside, "strictly_between": strictly})
    return rows, loose, strict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="SN-Net training epochs [TrainConfig default]")
    ap.add_argument("--anchor-epochs", type=int, default=None, help="[ANCHOR_CONFIG default]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="keeps checkpoints (default: a temp dir)")
    ap.add_argument("--family", default="digits", help="digits (ViT), digits-cnn or digits-swin")
    ap.add_argument("--out", type=Path, default=None, help="[results/train_<family>.json]")
    args = ap.parse_args()
    args.out = args.out or RESULTS / f"train_{args.family}.json"
    fam = args.family
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from snnet_export.train.data import eval_loader, first_images, load_data
    from snnet_export.train.evaluate import evaluate_configs
    from snnet_export.model.lsinit import ls_init_
    from snnet_export.model.snnet import load_checkpoint, snnet_from_family
    from snnet_export.train import ANCHOR_CONFIG, TrainConfig, train_anchors, train_snnet

    work = args.workdir or Path(tempfile.mkdtemp(prefix="snnet_train_digits_"))
    env, walls = _environment(args.threads), {}
    acfg = replace(ANCHOR_CONFIG, **({"epochs": args.anchor_epochs} if args.anchor_epochs else {}))
    scfg = TrainConfig(**({"epochs": args.epochs} if args.epochs else {}))

    t0 = time.perf_counter()
    anchors = train_anchors(fam, "digits", work / "anchors.pth", acfg, force=True)
    walls["train_anchors_s"] = round(time.perf_counter() - t0, 1)
    anchor_acc = json.loads(anchors.with_suffix(".json").read_text())["anchors"]

    t0 = time.perf_counter()
    net = load_checkpoint(snnet_from_family(fam), anchors)
    splits = load_data("digits", net)
    loader = eval_loader(splits.val, 360)
    default_init = _stitch_accuracies(net, loader)
    ls_init_(net, first_images(splits.train_eval, 100, seed=0))
    ls_init = _stitch_accuracies(net, loader)
    walls["ls_ablation_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    ckpt = train_snnet(fam, anchors, "digits", work / "snnet", scfg, force=True)
    walls["train_snnet_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    (work / "results.jsonl").unlink(missing_ok=True)
    records = evaluate_configs(fam, ckpt, "digits", work / "results.jsonl")
    walls["eval_71_s"] = round(time.perf_counter() - t0, 1)
    acc = {r["cfg_id"]: r["acc1"] for r in records}
    rows, loose, strict = _between(net, acc)
    for r in rows:
        r.update(default_init_acc1=default_init[r["cfg_id"]], ls_init_acc1=ls_init[r["cfg_id"]],
                 flops=next(x["flops"] for x in records if x["cfg_id"] == r["cfg_id"]))

    env["loadavg_end"] = list(os.getloadavg())
    result = {
        "benchmark": "train_digits", "family": fam, "environment": env, "wall_seconds": walls,
        "anchor_config": asdict(acfg), "snnet_config": asdict(scfg),
        "anchors_from_scratch": anchor_acc,
        "before_training": {"default_init": _summary(default_init), "ls_init": _summary(ls_init)},
        "after_training": {"anchors_acc1": [acc[i] for i in range(len(net.anchors))], "stitches": _summary({r["cfg_id"]: r["acc1"] for r in rows}),
                           "between_rule": RULE, "between": loose, "strictly_between": strict, "num_stitches": len(rows)},
        "per_stitch": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result).split("\n## Per stitch")[0])


def _markdown(r: dict) -> str:
    env, w, b, a = r["environment"], r["wall_seconds"], r["before_training"], r["after_training"]
    lines = [
        f"# Training the {r.get('family', 'digits')} SN-Net (benchmarks/train_digits.py)", "",
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), {env['torch_threads']} torch threads "
        f"(OMP_WAIT_POLICY={env.get('omp_wait_policy')}), fp32; "
        f"torch {env['torch']}, timm {env['timm']}, scikit-learn {env['scikit_learn']}; load average at start "
        f"{env['loadavg_start'][0]:.1f}, at end {env['loadavg_end'][0]:.1f} (the machine was shared).", "",
        *(f"{note}\n" for note in r.get("notes", [])),
        "| step | wall time |", "|---|---|",
        *(f"| {LABELS.get(k, k)} | {v:.0f} s |" for k, v in w.items()),
        f"| total | {sum(w.values()):.0f} s |", "",
        "## Anchors trained from scratch (val Top-1, 360 images)", "",
        "| anchor | Top-1 | Top-5 |", "|---|---|---|",
        *(f"| {x['name']} | {x['acc1']:.2f} | {x['acc5']:.2f} |" for x in r["anchors_from_scratch"]), "",
        f"## Stitching-layer init before any SN-Net training ({len(r['per_stitch'])} stitches, val Top-1)", "",
        "| init | mean | median | min | max |", "|---|---|---|---|---|",
        *(f"| {name} | {s['mean']:.2f} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} |"
          for name, s in (("default (random)", b["default_init"]), ("least squares", b["ls_init"]))), "",
        f"## After {r['snnet_config']['epochs']} epochs of Algorithm 1 ({r['snnet_config']['sampling']} sampling)", "",
        f"Anchors: {' / '.join(f'{x:.2f}' for x in a['anchors_acc1'])}. Stitches: mean {a['stitches']['mean']:.2f}, "
        f"median {a['stitches']['median']:.2f}. **{a['between']} of {a['num_stitches']}** stitches lie between their "
        f"anchors ({a['strictly_between']} strictly). Rule: {a['between_rule']}.", "",
        "## Per stitch", "",
        "| id | path | MFLOPs | default init | LS init | trained | between |", "|---|---|---|---|---|---|---|",
        *(f"| {x['cfg_id']} | {x['path']} | {x['flops'] / 1e6:.2f} | {x['default_init_acc1']:.2f} | "
          f"{x['ls_init_acc1']:.2f} | {x['acc1']:.2f} | {'yes' if x['between'] else 'no'} |" for x in r["per_stitch"]),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
