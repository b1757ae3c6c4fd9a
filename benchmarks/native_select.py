"""Speed of the native selector (libsnnet_select) beside the Python Selector, one run.

On a synthetic 71-stitch DeiT folder (``snnet_export.conformance.folders.write_folder``: the
official DeiT stitch table, throughput ~ 1/FLOPs; the selector reads only manifest and profile):

* C (``bench_select``, native/bench/bench_select.cpp, linked to the static library): per-call
  ``choose``, ``observe`` and ``set_budget`` latency (median, p99 over N calls, each timed with
  steady_clock), heap allocations during those loops (malloc/operator new replaced by counting
  shims in the bench binary) and the time to open the folder (median of 30 opens);
* Python (``Selector(resident="none")``, the reference): the same calls timed with
  ``perf_counter_ns``, open time (median of 10).

C, Python, C again (interleaved), with the load average before and after and the machine's matmul
peak measured in the same run. Goal: choose and observe median <= 1 us, 0 allocations.

    make native && .venv/bin/python benchmarks/native_select.py

Writes benchmarks/results/native_select.json and .md.
"""
from __future__ import annotations

import json
import os
import platform
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


def c_bench(folder: Path, calls: int) -> dict:
    out = subprocess.run([str(BENCH), str(folder), str(calls), "30"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _per_call(fn, calls: int) -> dict:
    ns = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn(i)
        ns.append(clock() - t0)
    ns.sort()
    return {"median": round(ns[len(ns) // 2] / 1e3, 4), "p99": round(ns[int(len(ns) * 0.99)] / 1e3, 4)}


def py_bench(folder: Path, calls: int) -> dict:
    from snnet_export.runtime import Selector

    prof = folder / "profile.synthetic.json"
    opens = []
    for _ in range(10):
        t0 = time.perf_counter()
        sel = Selector(folder, backend="ort", resident="none", profile=prof)
        opens.append((time.perf_counter() - t0) * 1e3)
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
            "open_ms": {"median": round(statistics.median(opens), 3), "min": round(min(opens), 3), "runs": len(opens)},
            "choose_us": choose, "observe_us": observe, "set_budget_us": set_budget}


def main() -> int:
    if not BENCH.is_file():
        sys.exit(f"{BENCH} is missing: run `make native` first")
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.conformance.folders import write_folder

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "deit", "deit_tsb")
        c1 = c_bench(folder, 200_000)
        py = py_bench(folder, 50_000)
        c2 = c_bench(folder, 200_000)
    peak = matmul_peak(threads=1, reps=3)
    result = {
        "folder": "synthetic deit_tsb, 71 stitches, batches [1, 8] (conformance.folders.write_folder)",
        "c": [c1, c2], "python": py,
        "ratio_python_over_c": {k: round(py[k]["median"] / statistics.median([c1[k]["median"], c2[k]["median"]]), 1)
                                for k in ("choose_us", "observe_us", "set_budget_us")},
        "open_ratio_python_over_c": round(py["open_ms"]["median"] / statistics.median([c1["open_ms"]["median"],
                                                                                      c2["open_ms"]["median"]]), 1),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "matmul_peak_gflops_1_thread": peak["gflops"],
        "environment": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                        "build": "make native (Release, -O3 via CMake's Release flags, static library)"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "native_select.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = ["| call | C median (us) | C p99 (us) | C allocations | Python median (us) | Python p99 (us) | Python / C |",
            "|---|---|---|---|---|---|---|"]
    for k in ("choose_us", "observe_us", "set_budget_us"):
        rows.append(f"| {k[:-3]} | {c1[k]['median']} / {c2[k]['median']} | {c1[k]['p99']} / {c2[k]['p99']} | "
                    f"{c1[k]['allocations']} / {c2[k]['allocations']} | {py[k]['median']} | {py[k]['p99']} | "
                    f"{result['ratio_python_over_c'][k]}x |")
    md = ["# Native selector vs Python Selector", "",
          f"Synthetic 71-stitch DeiT folder ({c1['frontier']} on the frontier), one run: C, Python, C "
          f"(both C runs shown). Load average {load_before[0]:.2f} before, {result['load_average']['after'][0]:.2f} "
          f"after; matmul peak {peak['gflops']} GFLOP/s (1 thread). Produced by `benchmarks/native_select.py`.", "",
          *rows, "",
          f"Open the folder: C {c1['open_ms']['median']} / {c2['open_ms']['median']} ms (median of 30), "
          f"Python {py['open_ms']['median']} ms (median of 10): {result['open_ratio_python_over_c']}x.", "",
          "Allocations are counted over all timed calls after open (malloc, calloc, realloc and operator new "
          "replaced in the bench binary). Per-call times include one steady_clock / perf_counter_ns read pair."]
    (RESULTS / "native_select.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
