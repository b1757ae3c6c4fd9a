"""Per-session ORT thread pools vs one shared (global) pool under a multi-threaded Selector.

Every stitch of the tiny family (71) is resident in one Selector; 8 caller threads each run
random resident stitches at batch 8 for a fixed time. Modes (each in a fresh process, since ORT's
global pools are per process), timed round-robin so load changes hit every mode alike:

* ``per-session default``: ``Selector(threads=None)``: ORT's default pool in every session;
* ``per-session 1``: ``Selector(threads=1)``: a 1-thread pool in every session;
* ``shared N``: ``Selector(shared_threads=N)``: every session on one global pool of N threads.

Reports calls/s (median over rounds), the process's OS thread count, and ratios to the default.
Usage (under the benchmark lock):
    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/thread_pool.py [--rounds 3 --seconds 4]
Writes benchmarks/results/thread_pool.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
MODES = {"per-session default": {}, "per-session 1": {"threads": 1}, "shared 1": {"shared_threads": 1},
         "shared 2": {"shared_threads": 2}}

TRIAL = textwrap.dedent("""
    import json, os, random, sys, threading, time, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from snnet_export.runtime import Selector
    folder, kwargs, seconds, callers = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    sel = Selector(folder, backend="ort", resident="all", **kwargs)
    ids = sel.resident
    x = np.random.default_rng(0).standard_normal((8, *sel.manifest["input_shape"])).astype(np.float32)
    for i in ids:
        sel.run(x, stitch=i)
    threads = len(os.listdir("/proc/self/task"))
    counts = [0] * callers
    stop = time.perf_counter() + seconds
    def work(k):
        rng = random.Random(k)
        n = 0
        while time.perf_counter() < stop:
            sel.run(x, stitch=rng.choice(ids))
            n += 1
        counts[k] = n
    ts = [threading.Thread(target=work, args=(k,)) for k in range(callers)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.perf_counter() - t0
    print(json.dumps({"calls_per_s": sum(counts) / wall, "os_threads": threads, "stitches": len(ids)}))
""")


def ensure_folder(folder: Path) -> None:
    cli = [sys.executable, "-m", "snnet_export.cli", "-q"]
    if not (folder / "manifest.json").exists() or len(json.loads((folder / "manifest.json").read_text())["configs"]) < 71:
        subprocess.run(cli + ["export", "tiny", "random", "-o", str(folder)], check=True, env=ENV)
    if not list(folder.glob("profile.*.json")):
        subprocess.run(cli + ["bench", str(folder), "--batch", "8", "--runs", "3", "--warmup", "1",
                              "--min-seconds", "0", "--threads", "1"], check=True, env=ENV)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=Path("/tmp/snnet-bench/tiny-fp32-all"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--callers", type=int, default=8)
    args = ap.parse_args()
    ensure_folder(args.folder)
    load = [round(v, 2) for v in os.getloadavg()]
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode, kwargs in MODES.items():
            out = subprocess.run([sys.executable, "-c", TRIAL, str(args.folder), json.dumps(kwargs), str(args.seconds),
                                  str(args.callers)], capture_output=True, text=True, env=ENV, check=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} {mode:<20} {runs[mode][-1]}", flush=True)
    base = statistics.median(x["calls_per_s"] for x in runs["per-session default"])
    rows = [{"mode": m, "calls_per_s_median": round(statistics.median(x["calls_per_s"] for x in v), 1),
             "calls_per_s_runs": [round(x["calls_per_s"], 1) for x in v], "os_threads": v[0]["os_threads"],
             "vs_default": round(statistics.median(x["calls_per_s"] for x in v) / base, 3)} for m, v in runs.items()]
    import onnxruntime

    env = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "python": platform.python_version(),
           "onnxruntime": onnxruntime.__version__, "load_average_before": load,
           "load_average_after": [round(v, 2) for v in os.getloadavg()], "family": "tiny (71 stitches, 32x32)",
           "batch": 8, "callers": args.callers, "seconds_per_trial": args.seconds, "rounds": args.rounds,
           "order": "round-robin over modes, one fresh process per trial"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "thread_pool.json").write_text(json.dumps({"rows": rows, "environment": env}, indent=2) + "\n")
    lines = ["# ORT thread pools under a multi-threaded Selector", "",
             "`benchmarks/thread_pool.py`: all 71 tiny stitches resident, 8 caller threads, batch 8.", "",
             "| mode | calls/s (median) | runs | OS threads in process | vs per-session default |",
             "|---|---:|---|---:|---:|"]
    lines += [f"| {r['mode']} | {r['calls_per_s_median']} | {r['calls_per_s_runs']} | {r['os_threads']} | "
              f"{r['vs_default']:.2f}x |" for r in rows]
    lines += ["", f"Environment: {env}"]
    (RESULTS / "thread_pool.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
