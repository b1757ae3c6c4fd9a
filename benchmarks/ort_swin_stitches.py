"""Benchmark (issue 21, item 4): does every stitched Swin graph run between its anchors in ONNX Runtime?

Opens every stitch of FOLDER (or ``--ids``) as the runtime selector does (``shared`` mode: one
zero-copy weight copy, no prepacking, one shared arena), times all of them interleaved in short
rounds (:func:`snnet_export.bench.measure.time_interleaved`) and checks, per stitch, that its
median latency lies between its two anchors' (the slower anchor's upper 95 % CI bound and the
faster one's lower bound are the limits). Records the load average and the matmul peak before and
after. Run under the shared benchmark lock::

    flock /work/bench.lock .venv/bin/python benchmarks/ort_swin_stitches.py --folder engines/swin5 --name swin5

Writes benchmarks/results/ort_swin_stitches[_NAME].json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def rss_anon_mib() -> float:
    """This process's anonymous resident memory (MiB; 0 where /proc is missing)."""
    from snnet_export.runtime.residency import rss_anon_bytes

    return (rss_anon_bytes() or 0) / 2 ** 20


def measure(folder: Path, ids: list[int] | None, batch: int, threads: int, runs: int, mode: str) -> dict[str, Any]:
    from snnet_export.bench.measure import latency_stats, ort_runners, time_interleaved
    from snnet_export.engine_folder.manifest import load_manifest

    m = load_manifest(folder)
    entries = {e["id"]: e for e in m["configs"]}
    ids = ids or sorted(entries)
    anchors = {e["front"]: e["id"] for e in entries.values() if e["position"] is None}
    ids = sorted(set(ids) | {anchors[entries[i][k]] for i in ids for k in ("front", "end")})
    x = np.random.default_rng(0).standard_normal((batch, *m["input_shape"])).astype(np.float32)
    runners, anon = {}, {}
    opened = ort_runners(folder, m, ids, threads, mode)
    for i in ids:  # anonymous memory each session adds when it opens (a private copy of weights shows here)
        a0 = rss_anon_mib()
        cfg, runners[i] = next(opened)
        anon[cfg] = round(rss_anon_mib() - a0, 1)
    load_before = os.getloadavg()
    t0 = time.time()
    cpu: dict[int, list[float]] = {i: [] for i in ids}

    def timed(i: int) -> None:  # CPU seconds of the whole process (all ORT threads) per call, besides wall
        c0 = time.process_time()
        runners[i](x)
        cpu[i].append(time.process_time() - c0)

    lat = time_interleaved({str(i): (lambda i=i: timed(i)) for i in ids}, warmup=2, runs=runs, min_seconds=0)
    stats = {i: latency_stats(lat[str(i)], batch)["latency_ms"] for i in ids}
    for i in ids:
        stats[i]["cpu_p50"] = round(1e3 * float(np.median(cpu[i][2:])), 2)  # the warm-up calls dropped
    rows = []
    for i in ids:
        e = entries[i]
        a, b = anchors[e["front"]], anchors[e["end"]]
        fast, slow = sorted((a, b), key=lambda j: stats[j]["p50"])
        lo, hi = stats[fast]["ci95"][0], stats[slow]["ci95"][1]
        between = e["position"] is None or lo <= stats[i]["p50"] <= hi
        rows.append({"id": i, "path": e["path"], "gmacs": round(e["flops"] / 1e9, 3), "anchors": [a, b],
                     "open_anon_mib": anon[i],
                     "latency_ms": stats[i], "limits_ms": [lo, hi], "between": bool(between)})
    return {"rows": rows, "seconds": round(time.time() - t0, 1), "load_before": load_before,
            "load_after": os.getloadavg()}


def render(res: dict[str, Any]) -> str:
    s = res["settings"]
    stitched = [r for r in res["rows"] if r["anchors"][0] != r["anchors"][1]]
    ok = sum(r["between"] for r in stitched)
    lines = [f"# Swin stitches vs their anchors in ONNX Runtime ({s['folder']})", "",
             f"`{s['mode']}` mode (what the runtime selector runs), batch {s['batch']}, {s['threads']} intra-op threads, "
             f"{s['runs']} runs of each stitch timed interleaved in {res['seconds']} s; onnxruntime {s['onnxruntime']}. "
             f"Matmul peak before {res['peak_before']['gflops']} GFLOP/s, after {res['peak_after']['gflops']}; "
             f"load average before {[round(v, 2) for v in res['load_before']]}, after "
             f"{[round(v, 2) for v in res['load_after']]}.", "",
             f"**{ok} of {len(stitched)} stitches lie between their anchors** (median within [faster anchor's "
             "lower 95 % CI bound, slower anchor's upper bound]).", "",
             "MiB anon at open: anonymous memory the process grew by while the session opened. CPU ms: median CPU time of the process per call (all ORT threads, spinning included); with one "
             "thread it is the work itself, little changed by other jobs on the machine.", "",
             "| id | path | GMACs | p50 ms | 95 % CI ms | CPU ms | CPU ms/GMAC | anchors | limits ms | between | MiB anon at open |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lat = r["latency_ms"]
        anchors = "-" if r["anchors"][0] == r["anchors"][1] else f"{r['anchors'][0]}, {r['anchors'][1]}"
        limits = "-" if anchors == "-" else f"{r['limits_ms'][0]:.1f} - {r['limits_ms'][1]:.1f}"
        verdict = "-" if anchors == "-" else ("yes" if r["between"] else "**no**")
        lines.append(f"| {r['id']} | {r['path']} | {r['gmacs']} | {lat['p50']:.1f} | {lat['ci95'][0]:.1f} - "
                     f"{lat['ci95'][1]:.1f} | {lat['cpu_p50']:.1f} | {lat['cpu_p50'] / r['gmacs']:.1f} | {anchors} | "
                     f"{limits} | {verdict} | {r['open_anon_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--ids", default=None, help="stitch ids (their anchors are added); default: all")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--mode", default="shared")
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import onnxruntime

    from snnet_export.bench.peak import matmul_peak

    ids = [int(i) for i in args.ids.split(",")] if args.ids else None
    res: dict[str, Any] = {"settings": {"folder": str(args.folder), "batch": args.batch, "threads": args.threads,
                                        "runs": args.runs, "mode": args.mode, "onnxruntime": onnxruntime.__version__},
                           "peak_before": matmul_peak(args.threads)}
    res.update(measure(args.folder, ids, args.batch, args.threads, args.runs, args.mode))
    res["peak_after"] = matmul_peak(args.threads)
    stem = "ort_swin_stitches" + (f"_{args.name}" if args.name else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
