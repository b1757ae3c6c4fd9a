"""How close do the ORT modes get to this machine's own FP32 matmul limit on DeiT-B-sized stitches?

In one run: the matmul peak (``bench.peak.matmul_peak``, same threads) before and after, then
stitches 2 (DeiT-B) and 42 (S[0..2] -> B[1..11]) at batch 1 and 16 in ONNX Runtime's ``shared``
(the selector's default: one shared weight copy, no prepacking), ``fused`` (attention fused, still
shared) and ``fast`` (fused + prepacked private weights) modes, timed interleaved round-robin.
Reports p50, achieved GFLOP/s (2 x multiply-adds / p50), fraction of the peak and the latency ratio
to ``fast``. Goal (issue 12): default mode >= 80 % of peak at batch 16, >= 65 % at batch 1, within
10 % of ``fast``.

    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/efficiency.py [--folder engines/deit-12]

Writes benchmarks/results/efficiency.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
MODES = ("shared", "fused", "fast")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "engines/deit-12")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ids", default="2,42")
    ap.add_argument("--runs", type=int, default=8, help="timed runs per mode at batch 16 (batch 1: 5x)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from snnet_export.bench.measure import ort_options
    from snnet_export.bench.timing import time_interleaved
    from snnet_export.bench.peak import K, N, TOKENS, _ort_matmul, achieved, matmul_peak
    from snnet_export.bench.stats import machine_state, median_ci
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort.runner import OrtRunner, ort_session

    m = load_manifest(args.folder)
    weights = WeightFile(args.folder, m["weights"])
    res: dict = {"folder": str(args.folder.relative_to(ROOT)), "threads": args.threads,
                 "machine_before": machine_state(), "peak_before": matmul_peak(args.threads), "rows": []}
    rng = np.random.default_rng(0)
    sgemm = _ort_matmul(args.threads, rng.standard_normal((K, N)).astype(np.float32))  # the peak's own SGEMM
    for cfg in (int(i) for i in args.ids.split(",")):
        entry = config_entry(m, cfg)
        runners = {mode: OrtRunner(ort_session(args.folder, entry, weights, threads=args.threads, shared_arena=True,
                                               **ort_options(mode)), cfg) for mode in MODES}
        for batch in (1, 16):
            x = rng.standard_normal((batch, *m["input_shape"])).astype(np.float32)
            runs = args.runs * (5 if batch == 1 else 1)
            t0 = time.perf_counter()
            a = rng.standard_normal((TOKENS * batch, K)).astype(np.float32)
            fns = {k: partial(r, x) for k, r in runners.items()}
            fns["sgemm"] = partial(sgemm.run, None, {"a": a})  # the peak, timed interleaved with the modes
            lat = time_interleaved(fns, warmup=2, runs=runs, min_seconds=0.0)
            secs = time.perf_counter() - t0
            p50 = {k: float(np.median(v)) * 1e3 for k, v in lat.items()}
            sgemm_gflops = 2.0 * a.shape[0] * K * N / (p50["sgemm"] / 1e3) / 1e9
            for mode in MODES:
                lo, hi = median_ci(np.array(lat[mode]) * 1e3)
                eff = achieved(entry["flops"], batch, p50[mode], res["peak_before"]["gflops"])
                res["rows"].append({"id": cfg, "path": entry["path"], "gmacs": round(entry["flops"] / 1e9, 3),
                                    "batch": batch, "mode": mode, "p50_ms": round(p50[mode], 2),
                                    "ci95_ms": [round(lo, 2), round(hi, 2)], "runs": len(lat[mode]),
                                    **eff, "sgemm_interleaved_gflops": round(sgemm_gflops, 1),
                                    "of_interleaved_sgemm": round(eff["gflops"] / sgemm_gflops, 3),
                                    "vs_fast": round(p50[mode] / p50["fast"], 3), "seconds": round(secs, 1)})
            print(json.dumps(res["rows"][-3:]), flush=True)
        del runners
    res["peak_after"] = matmul_peak(args.threads)
    res["machine_after"] = machine_state()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "efficiency.json").write_text(json.dumps(res, indent=1))
    render(res)


def render(res: dict) -> None:
    pb, pa = res["peak_before"], res["peak_after"]
    lines = ["# ORT modes against the machine's matmul peak (DeiT-B-sized stitches)", "",
             f"{res['threads']} threads. Matmul peak before **{pb['gflops']} GFLOP/s** (ORT b1 {pb['ort_b1']}, "
             f"ORT b16 {pb['ort_b16']}, NumPy b16 {pb['numpy_b16']}), after {pa['gflops']} GFLOP/s. Load average "
             f"before {res['machine_before']['load_average']}, after {res['machine_after']['load_average']}. "
             "'of peak' is of the peak measured before; 'of interleaved SGEMM' is of the median GFLOP/s of the "
             "peak's SGEMM (same shapes, `[197*batch, 768] x [768, 3072]`) timed round-robin with the three modes, "
             "the fairer reference on a machine whose speed drifts.", "",
             "| id | path | batch | mode | p50 ms (95% CI) | GFLOP/s | of peak | SGEMM interleaved GFLOP/s | "
             "of interleaved SGEMM | latency / `fast` |", "|" + "---|" * 10]
    for r in res["rows"]:
        lines.append(f"| {r['id']} | {r['path']} | {r['batch']} | `{r['mode']}` | {r['p50_ms']} ({r['ci95_ms'][0]}-"
                     f"{r['ci95_ms'][1]}) | {r['gflops']} | {100 * r['of_peak']:.0f}% | {r['sgemm_interleaved_gflops']} | "
                     f"**{100 * r['of_interleaved_sgemm']:.0f}%** | {r['vs_fast']:.3f} |")
    (RESULTS / "efficiency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
