"""Set-up shared by the closed-loop benchmarks (``load_shift.py``, ``recovery_check.py``).

The DeiT dozen (12 stitches, random weights, published Top-1) exported when absent, the machine's
state and matmul peak, a fresh batch-1 profile measured in the run, the p99 budget derived from it,
and the busy processes that make the load.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
IDS = "0,1,2,6,18,30,36,42,48,54,60,66"  # 3 anchors, Ti->S and S->B stitches across the range
#: the budget: this many times the profiled p99 of stitch 18 (Ti[0..5] -> S[5..11])
BUDGET_OF_18 = 1.3


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def ensure_folder(folder: Path) -> None:
    """Export the DeiT dozen into ``folder`` unless it holds a manifest."""
    if (folder / "manifest.json").is_file():
        return
    cmd = [sys.executable, "-m", "snnet_export.cli", "export", "deit-tsb", "random", "-o", str(folder),
           "--configs", IDS, "--accuracy", str(ROOT / "tests/data/official_deit_tsb_stitches.tsv")]
    subprocess.run(cmd, check=True)


def prepare(folder: Path, threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export if needed, record the machine, measure a batch-1 profile; ``(result dict, profile)``."""
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.bench.stats import machine_state

    ensure_folder(folder)
    res: dict[str, Any] = {"folder": str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder),
                           "threads": threads, "cpu_count": os.cpu_count(), "machine_before": machine_state(),
                           "matmul_peak": matmul_peak(threads)}
    t0 = time.perf_counter()
    prof = profile_from_engines(folder, batches=(1,), threads=threads, runs=20, min_seconds=0.5,
                                rounds=5, progress=False, replace=True, peak=False, time_budget=60.0)
    res["profile_seconds"] = round(time.perf_counter() - t0, 1)
    res["profile_load"] = prof["environment"]["load_average"]
    return res, prof


def budget_ms(prof: dict[str, Any]) -> float:
    """``BUDGET_OF_18`` x the profiled batch-1 p99 of stitch 18 (ms, one decimal)."""
    p99 = {r["id"]: r["latency_ms"]["p99"] for r in prof["stitches"] if r["batch"] == 1}
    return round(BUDGET_OF_18 * p99[18], 1)


def start_load(procs: int, seconds: float) -> list[mp.Process]:
    """``procs`` busy processes (pure-Python spin loops), each exiting by itself after ``seconds``."""
    out = [mp.Process(target=_spin, args=(seconds,), daemon=True) for _ in range(procs)]
    for p in out:
        p.start()
    return out


def stop_load(procs: list[mp.Process]) -> None:
    """Stop the busy processes and wait for them."""
    for p in procs:
        if p.is_alive():
            p.terminate()
        p.join()
