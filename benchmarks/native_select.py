"""Speed of the native selector (libsnnet_select) beside the Python Selector, one run.

On a synthetic 71-stitch DeiT folder (``snnet_export.conformance.folders.write_folder``: the
official DeiT stitch table, throughput ~ 1/FLOPs; the selector reads only manifest and profile):

* C (``bench_select``, native/bench/bench_select.cpp, linked to the static library): per-call
  ``choose``, ``observe`` and ``set_budget`` latency (median, p99 over N calls, each timed with
  steady_clock; then the same loop untimed per call: ``loop_mean``), heap allocations during those
  loops (malloc/operator new replaced by counting shims in the bench binary; the count during open
  shows the shims count) and the time to open the folder (median of 30 opens);
* Python (``Selector(resident="none")``, the reference): the same calls timed with
  ``perf_counter_ns``, open time (median of 10).

C, Python, C again (interleaved), with the load average before and after and the machine's matmul
peak measured in the same run. Open time is also measured (C and Python, interleaved) on the real
71-stitch DeiT export's manifest (``--real``, default /work/engines-cache/deit71: its manifest.json
is copied to a temporary folder beside a synthetic profile for its ids; nothing is written there).
Goal: choose and observe median <= 1 us, 0 allocations.

    make native && flock /work/bench.lock .venv/bin/python benchmarks/native_select.py

Writes benchmarks/results/native_select.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCH = ROOT / ".native-build" / "release" / "tests" / "bench_select"


def c_bench(folder: Path, calls: int, opens: int = 30) -> dict:
    out = subprocess.run([str(BENCH), str(folder), str(calls), str(opens)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _per_call(fn, calls: int) -> dict:
    ns = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn(i)
        ns.append(clock() - t0)
    t0 = clock()
    for i in range(calls):
        fn(i)
    loop = (clock() - t0) / calls
    ns.sort()
    return {"median": round(ns[len(ns) // 2] / 1e3, 4), "p99": round(ns[int(len(ns) * 0.99)] / 1e3, 4),
            "loop_mean": round(loop / 1e3, 4)}


def py_open(folder: Path, runs: int):
    from snnet_export.runtime import Selector

    opens = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the FLOPs-proxy warning of a folder with no accuracy
        for _ in range(runs):
            t0 = time.perf_counter()
            sel = Selector(folder, backend="ort", resident="none", profile=folder / "profile.synthetic.json")
            opens.append((time.perf_counter() - t0) * 1e3)
    return sel, {"median": round(statistics.median(opens), 3), "min": round(min(opens), 3), "runs": len(opens)}


def py_bench(folder: Path, calls: int) -> dict:
    sel, open_ms = py_open(folder, 10)
    best = sel.candidates[sel.current]
    budget = best.throughput[sel.batch] * 1.5  # the same budget rule as bench_select
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel.set_budget(min_throughput=budget)
        choose = _per_call(lambda i: sel.choose(), calls)
        base = 1.0 / sel._speed(sel.candidates[sel.current], 1)
        observe = _per_call(lambda i: sel.observe(sel.current, 1, base * (2.0 if (i // 5000) % 2 else 1.0)
                                                  * (1.0 + 0.01 * (i % 7))), calls)
        set_budget = _per_call(lambda i: sel.set_budget(min_throughput=budget * (0.5 if i % 2 else 1.5)), calls // 4)
    return {"stitches": len(sel.candidates), "frontier": len(sel.frontier), "calls": calls,
            "open_ms": open_ms, "choose_us": choose, "observe_us": observe, "set_budget_us": set_budget}


def real_folder(src: Path, tmp: Path) -> Path:
    """A copy of ``src``'s manifest beside a synthetic profile of its stitch ids (the selector reads only these)."""
    from snnet_export.conformance.folders import TableRow, make_profile

    out = tmp / "real"
    out.mkdir()
    shutil.copy(src / "manifest.json", out / "manifest.json")
    configs = json.loads((out / "manifest.json").read_text())["configs"]
    rows = [TableRow(c["id"], c["path"], c["flops"], 0.0) for c in configs]
    prof = make_profile(rows, random.Random(0), [1, 8], unmeasured=0.0)
    (out / "profile.synthetic.json").write_text(json.dumps(prof, indent=1))
    return out


def real_open(src: Path, tmp: Path) -> dict | None:
    """Open time of the real export's manifest: C, Python, C (interleaved)."""
    if not (src / "manifest.json").is_file():
        return None
    folder = real_folder(src, tmp)
    c1 = c_bench(folder, 1000)
    _, py = py_open(folder, 10)
    c2 = c_bench(folder, 1000)
    return {"source": str(src), "manifest_bytes": (folder / "manifest.json").stat().st_size,
            "stitches": c1["stitches"], "c_open_ms": [c1["open_ms"], c2["open_ms"]], "python_open_ms": py,
            "open_ratio_python_over_c": round(py["median"] / statistics.median([c1["open_ms"]["median"],
                                                                                c2["open_ms"]["median"]]), 1)}


def measure(real_src: Path) -> dict:
    """One interleaved run: C, Python, C on the synthetic folder, then the real manifest's open time."""
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.conformance.folders import write_folder

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "deit", "deit_tsb")
        c1 = c_bench(folder, 200_000)
        py = py_bench(folder, 50_000)
        c2 = c_bench(folder, 200_000)
        real = real_open(real_src, Path(tmp))
    load_after = os.getloadavg()
    peak = matmul_peak(threads=1, reps=3)

    def c_median(k: str, field: str = "median") -> float:
        return statistics.median([c1[k][field], c2[k][field]])

    return {
        "folder": "synthetic deit_tsb, 71 stitches, batches [1, 8] (conformance.folders.write_folder)",
        "c": [c1, c2], "python": py,
        "ratio_python_over_c": {k: round(py[k]["median"] / c_median(k), 1)
                                for k in ("choose_us", "observe_us", "set_budget_us")},
        "open_ratio_python_over_c": round(py["open_ms"]["median"] / c_median("open_ms"), 1),
        "real_folder": real,
        "goal": {"median_us_max": 1.0, "allocations": 0,
                 "met": all(c[k]["median"] <= 1.0 and c[k]["allocations"] == 0
                            for c in (c1, c2) for k in ("choose_us", "observe_us"))},
        "load_average": {"before": load_before, "after": load_after},
        "matmul_peak_gflops_1_thread": peak["gflops"],
        "environment": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "python": platform.python_version(),
                        "build": "make native (CMake Release: -O3 -DNDEBUG, -ffp-contract=off; static library)"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def markdown(r: dict) -> list[str]:
    """The results page (benchmarks/results/native_select.md)."""
    c1, c2, py = r["c"][0], r["c"][1], r["python"]
    rows = ["| call | C median (us) | C p99 (us) | C loop mean (us) | C allocations | Python median (us) | "
            "Python p99 (us) | Python loop mean (us) | Python / C (median) |", "|---|---|---|---|---|---|---|---|---|"]
    for k in ("choose_us", "observe_us", "set_budget_us"):
        rows.append(f"| {k[:-3]} | {c1[k]['median']} / {c2[k]['median']} | {c1[k]['p99']} / {c2[k]['p99']} | "
                    f"{c1[k]['loop_mean']} / {c2[k]['loop_mean']} | {c1[k]['allocations']} / {c2[k]['allocations']} | "
                    f"{py[k]['median']} | {py[k]['p99']} | {py[k]['loop_mean']} | {r['ratio_python_over_c'][k]}x |")
    la = r["load_average"]
    md = ["# Native selector vs Python Selector", "",
          f"Synthetic 71-stitch DeiT folder ({c1['frontier']} on the frontier), one run: C, Python, C "
          f"(both C runs shown as first / second). Load average {la['before'][0]:.2f} before, {la['after'][0]:.2f} "
          f"after ({r['environment']['cores']} cores, shared); matmul peak {r['matmul_peak_gflops_1_thread']} GFLOP/s "
          f"(1 thread). Produced by `benchmarks/native_select.py` on {r['created']}.", "",
          f"Goal (choose and observe median <= 1 us, 0 allocations after open): "
          f"{'met' if r['goal']['met'] else 'NOT met'}.", "",
          *rows, "",
          f"Open the synthetic folder: C {c1['open_ms']['median']} / {c2['open_ms']['median']} ms (median of "
          f"{c1['open_ms']['runs']}), Python {py['open_ms']['median']} ms (median of {py['open_ms']['runs']}): "
          f"{r['open_ratio_python_over_c']}x."]
    real = r["real_folder"]
    if real:
        co = real["c_open_ms"]
        md += ["", f"Open the real 71-stitch DeiT export's manifest ({real['manifest_bytes']} bytes, from "
               f"`{real['source']}`, beside a synthetic profile): C {co[0]['median']} / {co[1]['median']} ms, "
               f"Python {real['python_open_ms']['median']} ms: {real['open_ratio_python_over_c']}x. "
               f"The C open allocates ({co[0]['allocations']} allocations: the JSON document), which shows the "
               "counting shims count."]
    md += ["", "Allocations are counted over all calls after open, both loops (malloc, calloc, realloc and "
           "operator new replaced in the bench binary). Median and p99 time each call alone (one steady_clock / "
           "perf_counter_ns read pair included); the loop mean is the same loop's wall time / calls with no clock "
           "read inside. observe alternates the active stitch's profiled latency x1 and x2 every 5000 calls "
           f"(C re-chose {c1['observe_us']['rechose']} / {c2['observe_us']['rechose']} times)."]
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=Path("/work/engines-cache/deit71"),
                    help="a real 71-stitch export whose manifest's open time is measured too (skipped if absent)")
    args = ap.parse_args()
    if not BENCH.is_file():
        sys.exit(f"{BENCH} is missing: run `make native` first")
    result = measure(args.real)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "native_select.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (RESULTS / "native_select.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if result["goal"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
