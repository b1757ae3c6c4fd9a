"""Benchmark the runtime selector on DeiT-Ti/S/B (random weights, FP32, 2-core CPU, ONNX Runtime).

(b) process RSS with all 71 stitches resident in the Selector / weight-file bytes (goal <= 1.3),
    and the naive figure (each ONNX Runtime session loading its own weights, prepacking on),
    measured on a subset of stitches in a separate process and extrapolated to all 71;
(c) stitch-switch latency: the time of ``set_budget`` calls that change the active stitch,
    p50/p99 over many switches (goal p99 <= 1 ms), and the first call after a switch vs steady state.

Needs an FP32 export of every stitch and a batch-1 profile of this machine; it makes them if absent:
    .venv/bin/python benchmarks/selector_bench.py [--folder /tmp/snnet-bench/deit-fp32]
Writes benchmarks/results/selector.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

RESIDENT = textwrap.dedent("""
    import json, sys, time, warnings, numpy as np, psutil
    from snnet_export.runtime import Selector
    proc = psutil.Process()
    folder = sys.argv[1]
    rss0 = proc.memory_info().rss
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    sel = Selector(folder, resident="all", threads=2)
    load_s = time.perf_counter() - t
    rss_loaded = proc.memory_info().rss
    x = np.random.default_rng(0).standard_normal((1, *sel.manifest["input_shape"])).astype(np.float32)
    for i in sel.resident:
        sel.run(x, stitch=i)
    rss_run = proc.memory_info().rss
    # (c) switches: budgets alternating between frontier stitches
    front = sorted(sel.frontier, key=lambda i: sel.candidates[i].throughput[1])
    speeds = [sel.candidates[i].throughput[1] for i in front]
    sel.hysteresis = 0.0
    rng = np.random.default_rng(1)
    times, switched = [], 0
    for k in range(4000):
        target = speeds[rng.integers(len(speeds))]
        before = sel.current
        t0 = time.perf_counter_ns()
        sel.set_budget(min_throughput=target)
        dt = time.perf_counter_ns() - t0
        if sel.current != before:
            times.append(dt / 1e6)
            switched += 1
    ms = np.array(times)
    fast = front[-1]
    steady = []
    sel.set_budget(min_throughput=speeds[-1])
    for _ in range(30):
        t0 = time.perf_counter(); sel(x); steady.append((time.perf_counter() - t0) * 1e3)
    first = []
    for _ in range(15):
        sel.set_budget(min_throughput=speeds[0]); sel(x)
        sel.set_budget(min_throughput=speeds[-1])
        t0 = time.perf_counter(); sel(x); first.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"stitches": len(sel.resident), "frontier": len(sel.frontier), "load_seconds": load_s,
        "rss_before": rss0, "rss_loaded": rss_loaded, "rss_after_one_run_each": rss_run,
        "switches": switched, "switch_ms": {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max())}, "fastest_stitch": fast, "steady_call_ms_p50": float(np.median(steady)),
        "first_call_after_switch_ms_p50": float(np.median(first))}))
""")

NAIVE = textwrap.dedent("""
    import json, sys, numpy as np, psutil
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.runtime.ort.runner import OrtRunner, ort_session
    folder, ids = sys.argv[1], [int(i) for i in sys.argv[2].split(",")]
    m = load_manifest(folder)
    entries = {e["id"]: e for e in m["configs"]}
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    keep, own = [], 0
    for i in ids:
        e = entries[i]
        s = ort_session(folder, e, None, threads=2)  # ORT reads its own copy; prepacking on
        OrtRunner(s)(np.zeros((1, *m["input_shape"]), np.float32))
        keep.append(s)
        own += sum(m["weights"]["tensors"][t]["length"] for _, t in e["initializers"])
    print(json.dumps({"ids": ids, "rss_increase": proc.memory_info().rss - rss0, "stitch_weight_bytes": own}))
""")


def ensure_inputs(folder: Path) -> None:
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.export.stitches import export_stitches
    from snnet_export.engine_folder.profile import find_profile

    if not (folder / "manifest.json").exists():
        export_stitches("deit-tsb", "random", folder, "fp32")
    if find_profile(folder, "ort") is None:
        profile_from_engines(folder, backend="ort", batches=(1,), runs=5, min_seconds=0.3, threads=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default="/tmp/snnet-bench/deit-fp32")
    ap.add_argument("--naive-ids", default="0,1,2,20,40,60")
    args = ap.parse_args()
    folder = Path(args.folder)
    ensure_inputs(folder)
    from snnet_export.engine_folder.manifest import load_manifest

    m = load_manifest(folder)
    weight_bytes = m["weights"]["size"]
    naive_all = sum(m["weights"]["tensors"][t]["length"] for e in m["configs"] for _, t in e["initializers"])
    run = lambda code, *a: json.loads(subprocess.run([sys.executable, "-c", code, *a], check=True,
                                                      capture_output=True, text=True).stdout.strip().splitlines()[-1])
    res = run(RESIDENT, str(folder))
    naive = run(NAIVE, str(folder), args.naive_ids)
    factor = naive["rss_increase"] / naive["stitch_weight_bytes"]
    out = {
        "benchmark": "selector", "folder": str(folder), "family": "deit-tsb", "precision": m["precision"],
        "weight_file_bytes": weight_bytes, "resident": res,
        "rss_ratio": round(res["rss_after_one_run_each"] / weight_bytes, 3),
        "rss_ratio_excluding_interpreter": round((res["rss_after_one_run_each"] - res["rss_before"]) / weight_bytes, 3),
        "naive": {**naive, "rss_per_weight_byte": round(factor, 3),
                  "extrapolated_rss_all_stitches": int(factor * naive_all),
                  "extrapolated_ratio": round(factor * naive_all / weight_bytes, 1)},
        "environment": {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selector.json").write_text(json.dumps(out, indent=2) + "\n")
    sw = res["switch_ms"]
    md = f"""# Selector benchmark: deit-tsb, random weights, FP32, ONNX Runtime on {os.cpu_count()} CPU cores

| measure | result | goal |
|---|---|---|
| RSS with all {res['stitches']} stitches resident (after one run each) | {res['rss_after_one_run_each'] / 2**20:.0f} MiB | |
| weight file | {weight_bytes / 2**20:.0f} MiB | |
| RSS / weight-file bytes | **{out['rss_ratio']:.3f}** ({out['rss_ratio_excluding_interpreter']:.3f} without the {res['rss_before'] / 2**20:.0f} MiB interpreter baseline) | <= 1.3 |
| naive: every session its own weights (measured on stitches {args.naive_ids}, extrapolated to 71) | {out['naive']['extrapolated_rss_all_stitches'] / 2**30:.1f} GiB = {out['naive']['extrapolated_ratio']}x the weight file | |
| stitch switch (`set_budget` that changes stitch), {res['switches']} switches | p50 {sw['p50'] * 1e3:.1f} us, p99 {sw['p99'] * 1e3:.1f} us, max {sw['max'] * 1e3:.0f} us | p99 <= 1 ms |
| first call after a switch vs steady state (stitch {res['fastest_stitch']}, batch 1) | {res['first_call_after_switch_ms_p50']:.1f} ms vs {res['steady_call_ms_p50']:.1f} ms | |
| loading all {res['stitches']} sessions | {res['load_seconds']:.0f} s | |
"""
    (RESULTS / "selector.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
