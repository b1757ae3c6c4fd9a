"""Selector memory on all 71 DeiT-Ti/S/B stitches (random weights, FP32, ONNX Runtime, 2-core CPU).

(1) Where the memory goes: with all 71 stitches resident in a Selector, after each ran once at
    batch 1 and once at batch 16, the process's RSS split by /proc/self/smaps into the weight
    file's mapping, other file mappings (libraries) and anonymous memory, and the anonymous part
    into the interpreter baseline, per-session state (growth while loading) and what the runs left
    (activation arena, C heap). Three settings, each in a fresh process:
      ``before``  - the settings of the previous round (NCHWc transformer on, the arena keeps its
                    activations, glibc's dynamic mmap threshold);
      ``shared``  - this round's Selector (``ort_mode='shared'``);
      ``fused``   - the same with attention fused (``ort_mode='fused'``).
    Goal: RSS <= 1.3x the weight file.
(2) Budgeted mode: ``max_resident_mb`` of weights + 20 sessions' estimate; every one of the 71
    stitches is called (twice, in two orders, batch 1), RSS is sampled after every call and the
    cold-switch cost (load on a miss, p50/p99) comes from ``describe()``. The impossible budget's
    one-line refusal is recorded.
(3) Switch latency (``set_budget`` that changes the active stitch) and the cost of handing the
    activations back after each call (DeiT-B, batch 1 and 16, blocks timed interleaved).

The profile is a FLOPs proxy written for this benchmark (selection quality is not measured here).
    .venv/bin/python benchmarks/selector_bench.py [--folder engines/deit71]
(export the folder once: ``snnet-export export deit-tsb random -o engines/deit71 --no-verify``).
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
ROOT = Path(__file__).resolve().parent.parent

COMMON = textwrap.dedent("""
    import json, os, sys, time, warnings, numpy as np
    warnings.simplefilter("ignore")
    def rollup():
        out = {}
        for line in open("/proc/self/smaps_rollup"):
            p = line.split()
            if len(p) >= 3 and p[2] == "kB":
                out[p[0].rstrip(":")] = int(p[1]) * 1024
        return out
    def mapped(name):  # Rss of the mappings of files whose path ends with name
        rss, cur = 0, False
        for line in open("/proc/self/smaps"):
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                cur = len(head) >= 6 and head[-1].endswith(name)
            elif cur and line.startswith("Rss:"):
                rss += int(head[1]) * 1024
        return rss
    def threads():
        return len(os.listdir("/proc/self/task"))
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
""")

RESIDENT = COMMON + textwrap.dedent("""
    folder, setting = sys.argv[1], sys.argv[2]
    base = rollup()
    from snnet_export.runtime import Selector
    import snnet_export.runtime.ort.runner as R
    if setting == "before":  # the previous round's settings
        R.PRIVATE_COPY_OPTIMIZERS = ()
        R._LEAN_HEAP = False
        R._ARENA_EXTEND_SAME_AS_REQUESTED = -1  # ORT's default, kNextPowerOfTwo
        _Orig = R.OrtRunner
        class Keep(_Orig):
            def __init__(self, session, cfg_id=None, release_activations=False):
                super().__init__(session, cfg_id, False)
        R.OrtRunner = Keep
    from snnet_export.runtime.loading import _warm_environment
    R.use_global_threads(2)
    _warm_environment(True)  # ORT's one-time set-up, not a session's
    imported = rollup()
    t = time.perf_counter()
    sel = Selector(folder, resident="all", shared_threads=2, adaptive=False, profile=sys.argv[3],
                   ort_mode="fused" if setting == "fused" else "shared")
    load_s = time.perf_counter() - t
    loaded = rollup()
    wname = sel.manifest["weights"]["file"]
    out = {"setting": setting, "stitches": len(sel.resident), "load_seconds": round(load_s, 1),
           "threads": threads(), "rss_baseline": base["Rss"], "anon_baseline": base["Anonymous"],
           "anon_after_imports": imported["Anonymous"], "anon_after_load": loaded["Anonymous"],
           "rss_after_load": loaded["Rss"], "weights_mapped_after_load": mapped(wname), "after": {}}
    for batch in (1, 16):
        x = np.random.default_rng(0).standard_normal((batch, *sel.manifest["input_shape"])).astype(np.float32)
        t = time.perf_counter()
        for i in sel.resident:
            sel.run(x, stitch=i)
        seconds, input_bytes = time.perf_counter() - t, x.nbytes
        del x  # the input batch is the app's, not the Selector's
        r = rollup()
        out["after"][batch] = {"rss": r["Rss"], "anon": r["Anonymous"], "weights_mapped": mapped(wname),
                               "seconds": round(seconds, 1), "input_bytes": input_bytes}
    out["vm_hwm"] = hwm()
    if setting == "shared":  # (3) switch latency between frontier stitches
        front = sorted(sel.frontier, key=lambda i: sel.candidates[i].throughput[1])
        speeds = [sel.candidates[i].throughput[1] for i in front]
        sel.hysteresis = 0.0
        rng = np.random.default_rng(1)
        times = []
        for k in range(4000):
            before = sel.current
            t0 = time.perf_counter_ns()
            sel.set_budget(min_throughput=speeds[rng.integers(len(speeds))])
            dt = time.perf_counter_ns() - t0
            if sel.current != before:
                times.append(dt / 1e6)
        ms = np.array(times)
        out["switch_ms"] = {"n": int(ms.size), "p50": float(np.percentile(ms, 50)),
                            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}
    print(json.dumps(out))
""")

BUDGETED = COMMON + textwrap.dedent("""
    folder, budget_sessions = sys.argv[1], int(sys.argv[2])
    from snnet_export.errors import MemoryBudgetError
    from snnet_export.runtime import Selector
    from snnet_export.runtime.residency import MiB, estimate_session_bytes
    from snnet_export.engine_folder.manifest import load_manifest
    m = load_manifest(folder)
    est = max(estimate_session_bytes(e["onnx_bytes"]) for e in m["configs"])
    weights = m["weights"]["size"]
    try:
        Selector(folder, resident="none", profile=sys.argv[3], max_resident_mb=weights / MiB - 1)
        refusal = None
    except MemoryBudgetError as exc:
        refusal = str(exc)
    from snnet_export.runtime.loading import _warm_environment
    from snnet_export.runtime.ort.runner import use_global_threads
    use_global_threads(2)
    _warm_environment(True)  # onnxruntime's libraries and one-time set-up are in the baseline
    base = rollup()["Rss"]
    budget_mb = (weights + budget_sessions * est) / MiB
    sel = Selector(folder, resident="frontier", shared_threads=2, adaptive=False, profile=sys.argv[3],
                   max_resident_mb=budget_mb)
    start = sel.describe()["residency"]
    x = np.random.default_rng(0).standard_normal((1, *m["input_shape"])).astype(np.float32)
    ids = sorted(sel.candidates)
    order = ids + list(np.random.default_rng(2).permutation(ids))
    over, rss_over, worst_anon, worst_rss, worst_acct = 0, 0, 0, 0, 0
    t = time.perf_counter()
    for i in order:
        sel.run(x, stitch=int(i))
        r = rollup()
        d = sel.residency.describe()
        worst_rss = max(worst_rss, r["Rss"] - base)
        worst_anon = max(worst_anon, r["Anonymous"])
        worst_acct = max(worst_acct, d["accounted_mb"])
        over += d["resident_mb"] > d["budget_mb"]
        rss_over += r["Rss"] - base > budget_mb * MiB
    d = sel.describe()["residency"]
    print(json.dumps({"budget_mb": budget_mb, "weight_bytes": weights, "session_estimate_max_bytes": est,
        "refusal": refusal, "calls": len(order), "seconds": round(time.perf_counter() - t, 1),
        "resident_at_start": len(start["resident"]), "accounted_over_budget_calls": over,
        "accounted_max_mb": worst_acct, "rss_growth_max": worst_rss, "rss_over_budget_calls": rss_over,
        "residency_measured_growth_max_mb": d["max_measured_growth_mb"], "residency_accounted_max_mb": d["max_accounted_mb"], "rss_baseline": base,
        "rss_after": rollup()["Rss"], "vm_hwm": hwm(), "loads": d["loads"], "evictions": d["evictions"],
        "cold_switch_ms": d["cold_switch_ms"], "resident_at_end": len(d["resident"]),
        "counted_session_mb": sorted(d["session_mb"].values()),
        "measured_session_mb": sorted(d["measured_mb"].values())}))
""")

LEVERS = COMMON + textwrap.dedent("""
    # what one DeiT-B call at batch 16 leaves in anonymous memory under each allocator setting
    folder, cfg, lever = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import onnxruntime as ort
    import snnet_export.runtime.ort.runner as R
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    R.use_global_threads(2); R.lean_heap()
    if lever == "pow2-arena":
        R._ARENA_EXTEND_SAME_AS_REQUESTED = -1
    if lever == "no-arena":
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, None)
        R._ARENA_REGISTERED = True
    m = load_manifest(folder)
    sess = R.ort_session(folder, config_entry(m, cfg), WeightFile(folder, m["weights"]), fast=True,
                         shared_arena=lever != "session-arena", global_threads=True, stop_spinning=True)
    run = R.OrtRunner(sess, cfg, release_activations=lever not in ("no-arena", "session-arena", "keep"))
    x = np.random.default_rng(0).standard_normal((16, *m["input_shape"])).astype(np.float32)
    before = rollup()["Anonymous"]
    times = []
    for k in range(3):  # the first call also sets up the kernels' one-time state (not timed)
        t = time.perf_counter(); run(x); times.append(time.perf_counter() - t)
    times = times[1:]
    left = rollup()["Anonymous"] - before  # the input is alive in both samples
    R.trim_heap()
    print(json.dumps({"lever": lever, "left": left, "left_after_trim": rollup()["Anonymous"] - before,
                      "ms": 1e3 * float(np.median(times))}))
""")

EQUAL = COMMON + textwrap.dedent("""
    # the default mode (fused) against the stock graphs (shared): same logits
    folder = sys.argv[1]
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort.runner import OrtRunner, ort_session
    m = load_manifest(folder); w = WeightFile(folder, m["weights"])
    x = np.random.default_rng(3).standard_normal((4, *m["input_shape"])).astype(np.float32)
    out = {}
    for cfg in range(0, len(m["configs"]), 5):
        e = config_entry(m, cfg)
        y = {f: OrtRunner(ort_session(folder, e, w, fast=f, shared_arena=True), cfg)(x) for f in (False, True)}
        out[cfg] = {"max_abs_diff": float(np.abs(y[True] - y[False]).max()), "max_abs": float(np.abs(y[False]).max()),
                    "same_top1": bool((y[True].argmax(1) == y[False].argmax(1)).all())}
    print(json.dumps(out))
""")

RELEASE_COST = COMMON + textwrap.dedent("""
    folder, cfg = sys.argv[1], int(sys.argv[2])
    import onnxruntime as ort
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort.runner import SHRINK_ARENA, lean_heap, ort_session, use_global_threads
    use_global_threads(2); lean_heap()
    m = load_manifest(folder)
    sess = ort_session(folder, config_entry(m, cfg), WeightFile(folder, m["weights"]), shared_arena=True,
                       global_threads=True, stop_spinning=True)
    keep, rel = ort.RunOptions(), ort.RunOptions()
    rel.add_run_config_entry(*SHRINK_ARENA)
    out = {}
    for batch, blocks in ((1, 8), (16, 3)):
        x = np.random.default_rng(0).standard_normal((batch, *m["input_shape"])).astype(np.float32)
        lat = {"keep": [], "release": []}
        for b in range(blocks):
            for name, ro in (("keep", keep), ("release", rel))[:: 1 if b % 2 else -1]:
                for k in range(4):
                    t = time.perf_counter(); sess.run(None, {"input": x}, ro); dt = time.perf_counter() - t
                    if k:  # the block's first call pays the switch of setting
                        lat[name].append(dt * 1e3)
        out[batch] = {k: float(np.median(v)) for k, v in lat.items()}
        out[batch]["ratio"] = out[batch]["release"] / out[batch]["keep"]
    print(json.dumps(out))
""")


def flops_profile(folder: Path) -> Path:
    """A FLOPs-proxy ORT profile (images/s = 1e11 / FLOPs): selection input only, never a measurement."""
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.engine_folder.profile import PROFILE_SCHEMA, device_name

    m = load_manifest(folder)
    stitches = []
    for e in m["configs"]:
        for b in (1, 16):
            tp = 1e11 / e["flops"] * (1.5 if b > 1 else 1)
            lat = 1e3 * b / tp
            stitches.append({"id": e["id"], "batch": b, "throughput": tp, "runs": 1,
                             "latency_ms": {"mean": lat, "p50": lat, "p90": lat, "p99": lat}})
    prof = {"schema": PROFILE_SCHEMA, "version": 1, "device": device_name("ort"), "backend": "ort",
            "precision": m["precision"], "environment": {"note": "FLOPs proxy for selector_bench.py, not measured"},
            "batches": [1, 16], "stitches": stitches}
    path = folder.parent / f"{folder.name}.flops-proxy-profile.json"
    path.write_text(json.dumps(prof))
    return path


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def breakdown(r: dict, weight_bytes: int) -> dict:
    """RSS after the batch-16 pass split into weights, libraries, baseline, sessions, runs."""
    a16 = r["after"]["16"]
    sessions = r["anon_after_load"] - r["anon_after_imports"]
    return {"rss": a16["rss"], "weights_mapped": a16["weights_mapped"],
            "other_files": a16["rss"] - a16["anon"] - a16["weights_mapped"],
            "anon_interpreter_and_imports": r["anon_after_imports"], "anon_sessions": sessions,
            "anon_sessions_per_stitch": sessions / r["stitches"], "anon_left_by_runs": a16["anon"] - r["anon_after_load"],
            "ratio": a16["rss"] / weight_bytes,
            "ratio_selector_own": (a16["weights_mapped"] + a16["anon"] - r["anon_after_imports"]) / weight_bytes, "ratio_growth": (a16["rss"] - r["rss_baseline"]) / weight_bytes,
            "ratio_after_batch1": r["after"]["1"]["rss"] / weight_bytes,
            "ratio_growth_after_batch1": (r["after"]["1"]["rss"] - r["rss_baseline"]) / weight_bytes}


LEVERS_TRIED = ("same-arena", "pow2-arena", "no-arena", "session-arena", "keep")
PARTS = ("resident", "levers", "equal", "budgeted", "release")


def measure_part(part: str, args: argparse.Namespace, prof: str, res: dict) -> None:
    """Run one part of the benchmark (each child a fresh process) into ``res``."""
    folder = str(args.folder)
    if part == "resident":
        res["resident"] = {s: child(RESIDENT, folder, s, prof) for s in args.settings.split(",")}
    elif part == "levers":
        res["levers"] = {lever: child(LEVERS, folder, "2", lever) for lever in LEVERS_TRIED}
    elif part == "equal":
        res["fused_vs_shared"] = child(EQUAL, folder)
    elif part == "budgeted":
        res["budgeted"] = child(BUDGETED, folder, str(args.budget_sessions), prof)
        res["budget_sessions"] = args.budget_sessions
    elif part == "release":
        res["release_cost"] = child(RELEASE_COST, folder, "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "engines/deit71")
    ap.add_argument("--budget-sessions", type=int, default=20)
    ap.add_argument("--settings", default="before,shared,fused")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}; "
                    "parts not named keep their figures from the existing results file (each run's machine "
                    "state is recorded), so a long benchmark can run as several short locked runs")
    ap.add_argument("--under-lock", action="store_true", help="record that this run holds /work/bench.lock "
                    "(run as `flock /work/bench.lock ... --under-lock`)")
    args = ap.parse_args()
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.bench.stats import machine_state
    from snnet_export.engine_folder.manifest import load_manifest

    m = load_manifest(args.folder)
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts: expected a subset of {PARTS}, got {parts}")
    path = RESULTS / "selector.json"
    res: dict = {}
    res.update({"benchmark": "selector", "folder": str(args.folder), "family": "deit-tsb", "precision": m["precision"],
                "weight_file_bytes": m["weights"]["size"]})
    labels = [f"resident:{s}" for s in args.settings.split(",")] if "resident" in parts else []
    labels += [p for p in parts if p != "resident"]
    run = {"parts": labels, "under_lock": args.under_lock, "machine_before": machine_state(), "peak_before": matmul_peak(2)}
    prof = str(flops_profile(args.folder))
    for part in parts:
        measure_part(part, args, prof, res)
    run["peak_after"], run["machine_after"] = matmul_peak(2), machine_state()
    # merged into the file as it is now (another part may have finished meanwhile): parts not run keep their figures
    old: dict = json.loads(path.read_text()) if set(parts) != set(PARTS) and path.is_file() else {}
    res["resident"] = {**old.get("resident", {}), **res.get("resident", {})}
    res["breakdown"] = {s: breakdown(r, res["weight_file_bytes"]) for s, r in res["resident"].items()}
    kept = [{**r, "parts": [x for x in r["parts"] if x not in labels]} for r in old.get("runs", [])]
    res["runs"] = [r for r in kept if r["parts"]] + [run]
    res = {**old, **res}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "selector.md").write_text(render(res))
    print(render(res))


LEVER_NOTES = {
    "same-arena": "this round: one shared arena, regions of the requested size, shrunk after each call",
    "pow2-arena": "the same arena with ORT's default power-of-two regions",
    "no-arena": "no arena: plain malloc/free (glibc, mmap threshold 128 KiB)",
    "session-arena": "an arena per session (ORT's default), not shrunk",
    "keep": "the shared arena, not shrunk after calls",
}


def render_runs(res: dict) -> list[str]:
    out = []
    for r in res.get("runs", []):
        lock = "under `flock /work/bench.lock`" if r.get("under_lock") else \
            "not under the lock (niced; RSS does not depend on load, any timing here was taken on a loaded machine)"
        if r.get("note"):
            out.append(f"- parts {', '.join(r['parts'])}: {r['note']}")
            continue
        out.append(f"- parts {', '.join(r['parts'])}, {lock}: load average before {r['machine_before']['load_average']}, after "
                   f"{r['machine_after']['load_average']}; matmul peak before {r['peak_before']['gflops']} GFLOP/s, "
                   f"after {r['peak_after']['gflops']}.")
    return out


def render_resident(res: dict) -> list[str]:
    mib = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    lines = ["## All 71 stitches resident, after each ran once at batch 1 and once at batch 16", "",
             "| setting | RSS MiB | / weight file | growth / weight file (b16; b1) | Selector's own / weight file | "
             "weight map | libraries | interpreter anon | sessions anon (per stitch) | left by runs | threads | "
             "peak RSS (VmHWM) |", "|" + "---|" * 12]
    for s, b in res["breakdown"].items():
        r = res["resident"][s]
        lines.append(f"| `{s}` | {mib(b['rss'])} | **{b['ratio']:.3f}** | **{b['ratio_growth']:.3f}**; "
                     f"{b['ratio_growth_after_batch1']:.3f} | **{b.get('ratio_selector_own', 0):.3f}** | "
                     f"{mib(b['weights_mapped'])} | {mib(b['other_files'])} | "
                     f"{mib(b['anon_interpreter_and_imports'])} | {mib(b['anon_sessions'])} "
                     f"({b['anon_sessions_per_stitch'] / 2**20:.2f}) | {mib(b['anon_left_by_runs'])} | {r['threads']} | "
                     f"{mib(r['vm_hwm'])} |")
    lines += ["", "Goal: <= 1.3x. `fused` is the default mode (`bench --ort-mode`, which the Selector follows). "
              "'growth' excludes the RSS of the interpreter before `import snnet_export.runtime`; "
              "'libraries' is other file-backed memory (onnxruntime, onnx, NumPy, Python); \"Selector's own\" is what "
              "opening the Selector and running the stitches added: the weight file's mapped pages plus the growth of "
              "anonymous memory after onnxruntime was imported and set up (sessions + what the runs left). Each figure is "
              "taken with the input batch freed (it is the app's: 0.6 MiB at batch 1, 9.2 MiB at batch 16). `before` is "
              "the previous round's settings (NCHWc transformer, unshrunk arena, power-of-two regions, dynamic glibc mmap "
              "threshold). Peak RSS includes the activations of the batch-16 call in flight."]
    return lines


def render_levers(res: dict) -> list[str]:
    lev = res.get("levers")
    if not lev:
        return []
    lines = ["", "## What one call leaves behind: anchor B (fused), batch 16, per allocator setting", "",
             "| setting | anon left by 3 calls MiB | after `malloc_trim(0)` MiB | p50 ms (calls 2-3) |", "|---|---|---|---|"]
    for name, r in lev.items():
        lines.append(f"| `{name}`: {LEVER_NOTES.get(name, name)} | {r['left'] / 2**20:.1f} | "
                     f"{r['left_after_trim'] / 2**20:.1f} | {r['ms']:.0f} |")
    lines += ["", "Each row is a fresh process; the timings are two calls each on a shared machine (indicative only)."]
    eq = res.get("fused_vs_shared")
    if eq:
        worst = max(r["max_abs_diff"] for r in eq.values())
        lines += ["", f"`fused` against `shared` (stock graphs), {len(eq)} stitches (every fifth), batch 4: largest "
                  f"difference in logits {worst:.2e} (logits up to {max(r['max_abs'] for r in eq.values()):.1f}); same "
                  f"top-1 for every image: {all(r['same_top1'] for r in eq.values())}."]
    return lines


def render_budgeted(res: dict) -> list[str]:
    mib = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    g = res["budgeted"]
    cold = g["cold_switch_ms"]
    measured = f"{min(g['measured_session_mb'])}-{max(g['measured_session_mb'])}" if g["measured_session_mb"] else "-"
    return ["", f"## Budgeted: `max_resident_mb={g['budget_mb']:.0f}` (weights + {res.get('budget_sessions', 20)} x the "
            "largest session estimate)", "",
            f"- {g['calls']} calls over all 71 stitches (two orders, batch 1) in {g['seconds']} s: {g['loads']} loads, "
            f"{g['evictions']} evictions; {g['resident_at_start']} resident at start, {g['resident_at_end']} at the end.",
            f"- Accounted (weights + counted sessions) at most **{g['accounted_max_mb']:.1f} MiB**; process RSS growth "
            f"(sampled by the benchmark after each call, over its {mib(g['rss_baseline'])} MiB baseline with onnxruntime "
            f"imported and set up) at most **{g['rss_growth_max'] / 2**20:.1f} MiB**; calls over the budget: "
            f"**{g['accounted_over_budget_calls']}** (the Selector's own figure, the larger of the two) and "
            f"**{g.get('rss_over_budget_calls', '-')}** (the benchmark's RSS sample). The Selector's measured growth peaked at "
            f"{g.get('residency_measured_growth_max_mb', '-')} MiB (before it evicted down to the budget).",
            f"- Cold switch (load on a miss, incl. eviction and heap trim), from `describe()`: p50 **{cold['p50']} ms**, "
            f"p99 **{cold['p99']} ms** ({cold['n']} loads).",
            f"- Session sizes measured at load (RssAnon growth, quiet loads): {measured} MiB; counted (the larger of that "
            f"and the graph estimate): {min(g['counted_session_mb'])}-{max(g['counted_session_mb'])} MiB.",
            f"- Impossible budget: `{g['refusal']}`"]


def render(res: dict) -> str:
    w = res["weight_file_bytes"]
    lines = [f"# Selector memory: 71 DeiT-Ti/S/B stitches, FP32, ONNX Runtime, {os.cpu_count()} cores", "",
             f"Weight file {w / 2**20:.0f} MiB. RSS figures do not depend on load; timings do. Each run of "
             "the benchmark (`--parts`) and whether it held the shared benchmark lock:", "", *render_runs(res), ""]
    lines += render_resident(res) + render_levers(res) + render_budgeted(res) + ["", "## Costs", ""]
    sw = res["resident"].get("shared", {}).get("switch_ms")
    if sw:
        lines.append(f"- Stitch switch (`set_budget` that changes stitch, {sw['n']} switches): p50 {sw['p50'] * 1e3:.1f} us, "
                     f"p99 {sw['p99'] * 1e3:.1f} us.")
    rc = res.get("release_cost")
    if rc:
        lines.append(f"- Handing activations back after each call (DeiT-B, blocks interleaved): batch 1 "
                     f"{rc['1']['release']:.1f} vs {rc['1']['keep']:.1f} ms ({rc['1']['ratio']:.3f}x), batch 16 "
                     f"{rc['16']['release']:.0f} vs {rc['16']['keep']:.0f} ms ({rc['16']['ratio']:.3f}x).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
