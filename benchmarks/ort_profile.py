"""Per-op ONNX Runtime profiles (``enable_profiling``): where a stitch's time goes, by op type.

Two questions of issue 21:
  * DeiT-B (stitch 2) at batch 16: ``shared`` (one weight copy, no prepacking) vs ``fast``
    (prepacked private copy): which ops make up the gap to the matmul peak;
  * Swin: a stitched graph vs its anchors at batch 1: which op types take the extra time.
Each session is profiled over ``--runs`` calls after one warm-up; sessions are profiled one after
another (not interleaved), so compare op *shares* and per-op ratios, not absolute times across
rows. The matmul peak and load average are recorded.

    .venv/bin/python benchmarks/ort_profile.py --folder engines/deit71 --ids 2 --batch 16 --modes shared,fast --name deit
    .venv/bin/python benchmarks/ort_profile.py --folder engines/swin5 --ids 0,1,2,9,24 --batch 1 --modes shared --name swin
Writes benchmarks/results/ort_profile_NAME.json and .md.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def op_times(profile_file: str, runs: int) -> dict[str, dict[str, float]]:
    """``{op type: {"ms": mean ms per run, "nodes": count}}`` from an ORT profile (warm-up dropped)."""
    events = json.loads(Path(profile_file).read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    cut = runs_seen[0]["ts"] + runs_seen[0]["dur"] if len(runs_seen) > runs else 0  # after the warm-up
    ms: dict[str, float] = collections.defaultdict(float)
    nodes: dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= cut:
            op = e.get("args", {}).get("op_name", "?")
            ms[op] += e["dur"] / 1e3 / runs
            nodes[op].add(e["name"])
    return {op: {"ms": round(v, 3), "nodes": len(nodes[op])} for op, v in sorted(ms.items(), key=lambda kv: -kv[1])}


GEMM_OPS = ("MatMul", "FusedMatMul", "Gemm", "Attention")


def _macs(shapes: list[list[int]]) -> int:
    """Multiply-accumulates of a MatMul/FusedMatMul/Gemm node from its input shapes (0: unknown)."""
    if len(shapes) < 2 or min(len(shapes[0]), len(shapes[1])) < 2:
        return 0
    a, b = shapes[0], shapes[1]
    lead = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))) if len(a) > 2 or len(b) > 2 else 1
    return lead * a[-2] * a[-1] * (b[-2] if len(b) == 2 and b[-1] == a[-1] and b[-2] != a[-1] else b[-1])


def gemm_shapes(profile_file: str, runs: int) -> list[dict]:
    """Per (op type, input shapes): mean ms per run, node count and GMAC/s, slowest first."""
    events = json.loads(Path(profile_file).read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    cut = runs_seen[0]["ts"] + runs_seen[0]["dur"] if len(runs_seen) > runs else 0
    agg: dict[tuple, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= cut \
                and args.get("op_name") in GEMM_OPS:
            shapes = tuple(tuple(next(iter(d.values()))) for d in args.get("input_type_shape", []))
            agg[(args["op_name"], shapes)][0] += e["dur"] / 1e3 / runs
            agg[(args["op_name"], shapes)][1] += 1 / runs
    out = []
    for (op, shapes), (ms, count) in agg.items():
        macs = _macs([list(s) for s in shapes]) * round(count) if op != "Attention" else 0
        out.append({"op": op, "shapes": [list(s) for s in shapes], "nodes": round(count), "ms": round(ms, 3),
                    "gmac_per_s": round(macs / 1e9 / (ms / 1e3), 2) if macs and ms else None})
    return sorted(out, key=lambda r: -r["ms"])


def profile(folder: Path, cfg: int, mode: str, batch: int, runs: int, threads: int) -> dict:
    from snnet_export.bench.measure import ort_options
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort import runner as R

    m = load_manifest(folder)
    entry = config_entry(m, cfg)
    real = R.session_options

    def with_profiling(*a, **k):  # the same options the selector/bench use, plus the profiler
        so = real(*a, **k)
        so.enable_profiling = True
        so.profile_file_prefix = f"/tmp/ort_profile_{cfg}_{mode}_{batch}"
        return so

    R.session_options = with_profiling
    try:
        sess = R.ort_session(folder, entry, WeightFile(folder, m["weights"]), threads=threads, shared_arena=True,
                             **ort_options(mode))
    finally:
        R.session_options = real
    x = np.random.default_rng(0).standard_normal((batch, *m["input_shape"])).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(runs + 1):
        sess.run(None, {name: x})
    path = sess.end_profiling()
    ops = op_times(path, runs)
    shapes = gemm_shapes(path, runs)
    os.unlink(path)
    total = sum(v["ms"] for v in ops.values())
    return {"id": cfg, "path": entry["path"], "mode": mode, "batch": batch, "runs": runs, "gmacs": entry["flops"] / 1e9,
            "kernel_ms": round(total, 2), "ops": ops, "gemm_shapes": shapes, "load_average": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--modes", default="shared")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from snnet_export.bench.peak import matmul_peak

    res = {"folder": str(args.folder), "threads": args.threads, "peak_before": matmul_peak(args.threads), "rows": []}
    for cfg in (int(i) for i in args.ids.split(",")):
        for mode in args.modes.split(","):
            res["rows"].append(profile(args.folder, cfg, mode, args.batch, args.runs, args.threads))
            print(json.dumps({k: v for k, v in res["rows"][-1].items() if k != "ops"}), flush=True)
    res["peak_after"] = matmul_peak(args.threads)
    (RESULTS / f"ort_profile_{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / f"ort_profile_{args.name}.md").write_text(render(res, args.name))
    print(render(res, args.name))


def render(res: dict, name: str) -> str:
    pb, pa = res["peak_before"], res["peak_after"]
    ops = sorted({op for r in res["rows"] for op in r["ops"]},
                 key=lambda op: -max(r["ops"].get(op, {"ms": 0})["ms"] for r in res["rows"]))[:14]
    lines = [f"# ORT per-op profile: {name} ({res['folder']}, {res['threads']} threads)", "",
             f"Matmul peak before {pb['gflops']} GFLOP/s, after {pa['gflops']}; load average per row. Kernel time "
             "per call (ms, mean over the profiled runs) by op type, with the number of nodes of that type after "
             "ORT's optimisations in brackets.", "",
             "| id | path | mode | batch | load | GFLOP/s (kernels) | total ms | " + " | ".join(ops) + " |",
             "|" + "---|" * (7 + len(ops))]
    for r in res["rows"]:
        gfl = 2 * r["gmacs"] * r["batch"] / (r["kernel_ms"] / 1e3)
        cells = [f"{r['ops'][op]['ms']:.1f} ({r['ops'][op]['nodes']})" if op in r["ops"] else "-" for op in ops]
        lines.append(f"| {r['id']} | {r['path']} | `{r['mode']}` | {r['batch']} | {r['load_average'][0]:.1f} | "
                     f"{gfl:.1f} | {r['kernel_ms']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Matrix products per shape (the six slowest per row): GMAC/s and the share of the matmul peak "
              f"({max(pb['gflops'], pa['gflops']) / 2:.1f} GMAC/s, the better of before/after) the kernel reached.", "",
              "| id | mode | op | input shapes | nodes | ms | GMAC/s | of peak |", "|---|---|---|---|---|---|---|---|"]
    peak = max(pb["gflops"], pa["gflops"]) / 2
    for r in res["rows"]:
        for g in r.get("gemm_shapes", [])[:6]:
            shapes = " x ".join(str(tuple(s)).replace(" ", "") for s in g["shapes"][:2])
            rate = "-" if g["gmac_per_s"] is None else f"{g['gmac_per_s']:.1f}"
            share = "-" if g["gmac_per_s"] is None else f"{100 * g['gmac_per_s'] / peak:.0f}%"
            lines.append(f"| {r['id']} | `{r['mode']}` | {g['op']} | `{shapes}` | {g['nodes']} | {g['ms']:.1f} | "
                         f"{rate} | {share} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
