"""Benchmark: export every stitch of the full-size staged families (random weights) with one shared
weight file: Swin-Ti/S/B (41 stitches) and ResNet-18/50 (10), FP32 then FP16 (from the FP32 graphs).

Same measurements as ``export_deit.py``: folder bytes against the SN-Net's parameter bytes (goal
<= 1.02), the naive per-stitch total, the worst ORT-vs-PyTorch verification error (batch 1 and 3)
and the wall time split into tracing, weight-store writing and verification. Run under the shared
benchmark lock::

    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/export_families.py \
        [--families swin-tsb,resnet-18-50] [--precisions fp32,fp16] [--workdir /tmp/snnet-bench]

Writes benchmarks/results/export_families.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export_deit import run  # noqa: E402

from snnet_export.engine_folder.profile import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="swin-tsb,resnet-18-50")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default="/tmp/snnet-bench")
    ap.add_argument("--out", default=str(RESULTS / "export_families"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    load_before = os.getloadavg()
    results = []
    for family in args.families.split(","):
        for precision in args.precisions.split(","):
            source = work / f"{family}-fp32" if precision == "fp16" else None
            r = run(precision, work / f"{family}-{precision}", None, source, family=family)
            r.update(family=family, load_avg_after=[round(v, 2) for v in os.getloadavg()])
            results.append(r)
            print(json.dumps({k: r[k] for k in ("family", "precision", "stitches", "ratio_folder_to_params",
                                                 "max_rel_diff", "wall_seconds")}), flush=True)
    import onnx
    import onnxruntime

    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
           "python": platform.python_version(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
           "load_avg_before": [round(v, 2) for v in load_before], "load_avg_after": [round(v, 2) for v in os.getloadavg()]}
    result = {"benchmark": "export_families", "weights": "random (seed 0)", "environment": env, "results": results}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = ["| family | precision | stitches | SN-Net params | folder MB | weights MB | graphs MB | ratio (goal <= 1.02) "
            "| naive ratio | worst rel. diff vs PyTorch | export+verify s | trace / store / ORT check s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = r["wall_seconds"]
        rows.append(f"| {r['family']} | {r['precision']} ({r['source']}) | {r['stitches']} | {r['snnet_params']:,} | "
                    f"{r['folder_bytes'] / 1e6:.1f} | {r['weight_file_bytes'] / 1e6:.1f} | {r['graph_bytes'] / 1e6:.2f} | "
                    f"{r['ratio_folder_to_params']:.4f} | {r['naive_ratio']:.1f}x | {r['max_rel_diff']:.2e} | "
                    f"{w['export_and_verify']:.0f} | {w['sum_trace']:.0f} / {w['sum_store']:.0f} / {w['sum_verify']:.0f} |")
    fams = sorted({r["family"] for r in results}, key=[r["family"] for r in results].index)
    md = [f"# Export benchmark: {', '.join(fams)} (full size, random weights)", "",
          f"CPU: {env['cpu']} ({env['cores']} cores, {args.threads} torch threads), torch {env['torch']}, onnx "
          f"{env['onnx']}, onnxruntime {env['onnxruntime']}; load average (1/5/15 min) {env['load_avg_before']} "
          f"before, {env['load_avg_after']} after (2 cores shared with other jobs: wall times are inflated "
          "when the load is above 2)", "", *rows, "",
          "ratio = folder bytes (weight file + graphs + manifest) / (SN-Net parameters x bytes per parameter). "
          "naive = every stitch holding its own copy of its weights. worst rel. diff = max |ORT - PyTorch| / "
          "max |logit| over batch 1 and 3 of every stitch (limits 1e-4 FP32, 2e-2 FP16). With random weights, "
          "identical tensors are stored once: timm zero-initialises the last BatchNorm scale of every ResNet "
          "block, so those folded convolutions are all-zero and deduplicate, which puts the ResNet ratios "
          "below 1 (trained weights would not)."]
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
