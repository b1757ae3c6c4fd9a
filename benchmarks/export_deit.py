"""Benchmark: export all 71 DeiT-Ti/S/B stitches (random weights) with shared weights, FP32 and FP16.

Measures the folder's total bytes against the SN-Net's parameter bytes (goal <= 1.02), the naive
per-stitch total for comparison, and the wall time of export + verification, split into tracing,
weight-store writing, ORT-vs-PyTorch verification and the final `verify` of the files on disk.

    .venv/bin/python benchmarks/export_deit.py [--configs 0-70] [--workdir /tmp/snnet-bench]

Writes benchmarks/results/export_deit.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from snnet_export.export.stitches import export_stitches
from snnet_export.model.flops import family_info
from snnet_export.engine_folder.profile import cpu_name
from snnet_export.engine_folder.integrity import verify_folder

RESULTS = Path(__file__).resolve().parent / "results"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def run(precision: str, out: Path, configs: str | None, source: Path | None, family: str = "deit-tsb") -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    m = export_stitches(family, "random", out, precision=precision, configs=configs,
                        from_folder=source, progress=True)
    t_export = time.perf_counter() - t0
    t1 = time.perf_counter()
    verify_folder(out)
    t_verify_files = time.perf_counter() - t1
    params = family_info(family)["total_params"]
    bpp = 4 if precision == "fp32" else 2
    tensors = m["weights"]["tensors"]
    naive = sum(tensors[i]["length"] for e in m["configs"] for _, i in e["initializers"])
    graphs = sum(e["onnx_bytes"] for e in m["configs"])
    total = folder_bytes(out)
    steps = {k: round(sum(e["seconds"][k] for e in m["configs"]), 1) for k in ("trace", "store", "verify")}
    return {
        "precision": precision, "stitches": len(m["configs"]), "source": "traced" if source is None else "from fp32 folder",
        "snnet_params": params, "param_bytes": params * bpp,
        "folder_bytes": total, "weight_file_bytes": m["weights"]["size"], "graph_bytes": graphs,
        "manifest_bytes": (out / "manifest.json").stat().st_size, "tensors": len(tensors),
        "ratio_folder_to_params": round(total / (params * bpp), 4),
        "naive_weight_bytes": naive + graphs, "naive_ratio": round((naive + graphs) / (params * bpp), 2),
        "max_rel_diff": max(e["verified"]["rel_diff"] for e in m["configs"]),
        "min_top1_agree": min(e["verified"]["top1_agree"] for e in m["configs"]),
        "wall_seconds": {"export_and_verify": round(t_export, 1), "verify_files": round(t_verify_files, 1),
                         "total": round(t_export + t_verify_files, 1), **{f"sum_{k}": v for k, v in steps.items()}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=None)
    ap.add_argument("--workdir", default="/tmp/snnet-bench")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.workdir)
    load_before = os.getloadavg()
    fp32 = run("fp32", work / "deit-fp32", args.configs, None)
    fp16 = run("fp16", work / "deit-fp16", args.configs, work / "deit-fp32")
    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
           "python": platform.python_version(), "load_avg_before": load_before,
           "load_avg_after": os.getloadavg()}
    import onnx
    import onnxruntime

    env.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    result = {"benchmark": "export_deit", "family": "deit-tsb", "weights": "random (seed 0)",
              "environment": env, "results": [fp32, fp16]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export_deit.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = ["| precision | stitches | folder MB | weights MB | graphs MB | ratio (goal <= 1.02) | naive MB | naive ratio | export+verify s | verify files s | trace / store / ORT check s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (fp32, fp16):
        w = r["wall_seconds"]
        rows.append(f"| {r['precision']} ({r['source']}) | {r['stitches']} | {r['folder_bytes'] / 1e6:.1f} | "
                    f"{r['weight_file_bytes'] / 1e6:.1f} | {r['graph_bytes'] / 1e6:.2f} | {r['ratio_folder_to_params']:.4f} | "
                    f"{r['naive_weight_bytes'] / 1e6:.0f} | {r['naive_ratio']:.1f}x | {w['export_and_verify']:.0f} | "
                    f"{w['verify_files']:.0f} | {w['sum_trace']:.0f} / {w['sum_store']:.0f} / {w['sum_verify']:.0f} |")
    md = ["# Export benchmark: deit-tsb, random weights", "",
          f"CPU: {env['cpu']} ({env['cores']} cores), torch {env['torch']}, onnx {env['onnx']}, "
          f"onnxruntime {env['onnxruntime']}; load average (1/5/15 min) {load_before} before, "
          f"{env['load_avg_after']} after (2 cores: above 2 means other jobs shared them)", "", *rows, "",
          "ratio = folder bytes / (118,403,448 parameters x bytes per parameter). naive = every stitch "
          "holding its own copy of its weights (what a per-stitch export writes)."]
    (RESULTS / "export_deit.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
