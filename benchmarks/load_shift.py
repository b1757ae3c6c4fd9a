"""Does the selector hold a latency budget when the device slows down? Static vs adaptive, one run.

A stream of batch-1 calls on a dozen DeiT stitches (random weights, FP32, the published Top-1 of
each stitch as its accuracy) is served by two selectors at once, call by call in turn: the static
one (``adaptive=False``, trusts the profile) and the adaptive one (the default). Phases:

1. ``quiet``: the machine as it is;
2. ``load``: the script starts ``--load-procs`` busy processes (pure-Python spin loops, each exiting
   by itself after ``--load-seconds`` at the latest), and the same stream goes on;
3. ``recovered``: the busy processes are stopped.

At the end of every phase, still under that phase's conditions, each frontier stitch is timed
round-robin (the "oracle") to find the most accurate stitch that meets the budget *now*.
Per phase and selector it reports: share of calls within budget (all calls, and after settling),
p99 latency, mean Top-1 served, switches, and calls until the choice settled. It also measures the
adaptive hook's per-call overhead, the machine's matmul peak and the load average.

    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/load_shift.py [--folder engines/deit-12]

The folder is exported (``snnet-export export deit-tsb random --configs ...``) when absent.
Writes benchmarks/results/load_shift.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from closed_loop_setup import RESULTS, ROOT, budget_ms, prepare, start_load, stop_load

def serve(sels: dict, x: np.ndarray, calls: int) -> dict:
    """``calls`` calls on each selector, in turn; per selector the (stitch, ms) of every call."""
    out = {k: [] for k in sels}
    for _ in range(calls):
        for name, sel in sels.items():
            cfg = sel.current
            t0 = time.perf_counter()
            sel(x)
            out[name].append((cfg, (time.perf_counter() - t0) * 1e3))
    return out


def oracle(sel, x: np.ndarray, budget: float, runs: int) -> dict:
    """Each plausible frontier stitch timed round-robin now; the most accurate one meeting the budget."""
    ids = [i for i in sel.frontier if sel.candidates[i].latency_ms[1]["p50"] <= 1.5 * budget]
    lat = {i: [] for i in ids}
    for _ in range(runs):
        for i in ids:
            t0 = time.perf_counter()
            sel.run(x, stitch=i)
            lat[i].append((time.perf_counter() - t0) * 1e3)
    p99 = {i: float(np.percentile(v, 99)) for i, v in lat.items()}
    ok = [i for i in ids if p99[i] <= budget]
    best = max(ok, key=lambda i: sel.candidates[i].accuracy) if ok else None
    return {"p99_ms": {str(i): round(v, 2) for i, v in p99.items()}, "best": best,
            "best_top1": None if best is None else sel.candidates[best].accuracy}


def phase_stats(calls: list, sel, budget: float) -> dict:
    ids = [c for c, _ in calls]
    ms = np.array([m for _, m in calls])
    settled = next(k for k in range(len(ids)) if len(set(ids[k:])) == 1)
    after = ms[settled:]
    acc = [sel.candidates[c].accuracy for c in ids]
    return {"calls": len(ids), "within_budget": round(float((ms <= budget).mean()), 4),
            "within_budget_settled": round(float((after <= budget).mean()), 4) if after.size else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_top1": round(float(np.mean(acc)), 3), "settled_top1": sel.candidates[ids[-1]].accuracy,
            "switches": int(sum(a != b for a, b in zip(ids, ids[1:]))), "calls_to_settle": settled,
            "switches_per_1000": round(1000 * sum(a != b for a, b in zip(ids, ids[1:])) / len(ids), 1),
            "stitches": sorted(set(ids)), "final": ids[-1],
            "trace": [[c, round(float(m), 1)] for c, m in calls]}  # (stitch, ms) of every call, for diagnosis


def goals(phases: dict, sel) -> dict:
    """Issue 20's recovery goals for the adaptive selector (<= 20 calls; back to the quiet stitch or a
    tied one; within 1 Top-1 point of the oracle's best after the load; switches per 1,000 calls)."""
    from snnet_export.engine_folder.profile import tie_groups

    groups = tie_groups(sel.profile, 1)
    before = phases["quiet"]["adaptive"]["final"]
    after = phases["recovered"]["adaptive"]
    calls = sum(p["adaptive"]["calls"] for p in phases.values())
    best = phases["recovered"]["oracle"]["best_top1"]
    return {"load_calls_to_settle": phases["load"]["adaptive"]["calls_to_settle"],
            "recovered_calls_to_settle": after["calls_to_settle"],
            "back_to_quiet_stitch_or_tied": groups.get(after["final"], after["final"]) == groups.get(before, before),
            "top1_below_oracle_best": None if best is None else round(best - after["settled_top1"], 3),
            "switches_per_1000": round(1000 * sum(p["adaptive"]["switches"] for p in phases.values()) / calls, 1)}


def hook_overhead(folder: Path, threads: int, n: int = 20000) -> dict:
    """Per-call cost of the adaptive hook: ``sel(x)`` on a no-op runner, adaptive minus static."""
    from snnet_export.runtime import Selector

    x = np.zeros((1, 3, 224, 224), np.float32)
    out = {}
    for name, adaptive in (("static", False), ("adaptive", True)):
        sel = Selector(folder, resident="none", adaptive=adaptive)
        sel._active = (sel.current, lambda a: a)  # no model: only the selector's own work is timed
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                sel(x)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        out[f"{name}_us_per_call"] = round(best, 3)
    out["overhead_us"] = round(out["adaptive_us_per_call"] - out["static_us_per_call"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "engines/deit-12")
    ap.add_argument("--threads", type=int, default=1,
                    help="ORT intra-op threads (1: steadier than 2 on a 2-core machine shared with other jobs)")
    ap.add_argument("--calls", type=int, default=150, help="calls per phase and selector")
    ap.add_argument("--budget-ms", type=float, default=None,
                    help="latency budget [default: 1.3 x the profiled p99 of stitch 18, Ti[0..5] -> S[5..11]]")
    ap.add_argument("--load-procs", type=int, default=2)
    ap.add_argument("--load-seconds", type=float, default=300.0, help="busy processes exit by then at the latest")
    ap.add_argument("--oracle-runs", type=int, default=30)
    ap.add_argument("--hysteresis", type=float, default=0.1)
    ap.add_argument("--render", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.render:
        render(json.loads((RESULTS / "load_shift.json").read_text()))
        return
    warnings.simplefilter("ignore")
    from snnet_export.bench.stats import machine_state
    from snnet_export.runtime import Selector

    res, prof = prepare(args.folder, args.threads)
    sels = {"static": Selector(args.folder, threads=args.threads, adaptive=False, latency_stat="p99",
                               hysteresis=args.hysteresis),
            "adaptive": Selector(args.folder, threads=args.threads, adaptive=True, latency_stat="p99",
                                 hysteresis=args.hysteresis)}
    ref = sels["static"]
    budget = args.budget_ms or budget_ms(prof)
    res["budget_ms"] = budget
    res["frontier"] = [{"id": i, "top1": ref.candidates[i].accuracy, "p50_ms": ref.candidates[i].latency_ms[1]["p50"],
                        "p99_ms": ref.candidates[i].latency_ms[1]["p99"]} for i in ref.frontier]
    for sel in sels.values():
        sel.set_budget(max_latency_ms=budget, batch=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    serve(sels, x, 5)  # first calls of each session
    res["phases"] = {}
    procs: list = []
    for phase in ("quiet", "load", "recovered"):
        if phase == "load":
            procs = start_load(args.load_procs, args.load_seconds)
        if phase == "recovered":
            stop_load(procs)
        state = machine_state()
        calls = serve(sels, x, args.calls)
        res["phases"][phase] = {"machine_start": state,
                                "oracle": oracle(ref, x, budget, args.oracle_runs),
                                **{k: phase_stats(v, sels[k], budget) for k, v in calls.items()},
                                "adaptive_correction": round(sels["adaptive"].correction, 3),
                                "machine_end": machine_state()}
        print(phase, json.dumps({k: res["phases"][phase][k] for k in ("static", "adaptive", "oracle")}), flush=True)
    stop_load(procs)
    res["goals"] = goals(res["phases"], sels["adaptive"])
    res["describe_adaptive"] = sels["adaptive"].describe()
    res["hook_overhead"] = hook_overhead(args.folder, args.threads)
    res["machine_after"] = machine_state()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_shift.json").write_text(json.dumps(res, indent=1))
    render(res)


def render(res: dict) -> None:
    peak = res["matmul_peak"]
    lines = ["# Load shift: static vs adaptive selector", "",
             f"Folder `{res['folder']}` (12 DeiT stitches, random weights, FP32, published Top-1), ONNX Runtime "
             f"`shared`, {res['threads']} threads, batch 1, latency budget **{res['budget_ms']} ms** (p99). "
             f"Matmul peak {peak['gflops']} GFLOP/s. Load average before {res['machine_before']['load_average']}, "
             f"after {res['machine_after']['load_average']}; the profile was measured in this run at load "
             f"{res['profile_load']}.", "",
             "| phase | selector | within budget (all / after settling) | p99 ms | mean Top-1 served | final stitch "
             "(Top-1) | oracle best (Top-1) | switches | calls to settle | load at start |", "|" + "---|" * 10]
    for phase, d in res["phases"].items():
        o = d["oracle"]
        for name in ("static", "adaptive"):
            s = d[name]
            lines.append(f"| {phase} | {name} | {100 * s['within_budget']:.1f}% / {100 * s['within_budget_settled']:.1f}% "
                         f"| {s['p99_ms']} | {s['mean_top1']:.2f} | {s['final']} ({s['settled_top1']:.2f}) | "
                         f"{o['best']} ({o['best_top1']}) | {s['switches']} | {s['calls_to_settle']} | "
                         f"{d['machine_start']['load_average']} |")
    h = res["hook_overhead"]
    g = res.get("goals")
    if g:
        lines += ["", f"Recovery goals (adaptive): calls to settle after the load step **{g['load_calls_to_settle']}** "
                  f"(goal <= 20); after the load ends **{g['recovered_calls_to_settle']}** (goal <= 20), back on the quiet "
                  f"phase's stitch or one tied with it: **{g['back_to_quiet_stitch_or_tied']}**; Top-1 below the oracle's "
                  f"best then: **{g['top1_below_oracle_best']}** points (goal <= 1); switches per 1,000 calls: "
                  f"**{g['switches_per_1000']}**."]
    lines += ["", f"Adaptive hook overhead per call (no-op model, best of 5 x 20,000 calls): "
              f"**{h['overhead_us']} us** (static {h['static_us_per_call']} us, adaptive {h['adaptive_us_per_call']} us).",
              "", "Oracle: each frontier stitch whose profiled p50 is within 1.5x the budget, timed round-robin at "
              "the end of the phase (p99 of --oracle-runs runs, still under that phase's conditions); 'best' is the "
              "most accurate one within the budget then.", ""]
    (RESULTS / "load_shift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
