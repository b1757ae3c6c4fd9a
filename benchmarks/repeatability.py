"""Are two back-to-back ``bench`` runs the same ranking? DeiT dozen and the demo folder.

For each folder, ``profile_from_engines`` runs twice in a row with the same settings (not written:
the folder's profile is left alone) and per batch it reports Spearman's rho of the stitches'
throughputs, the median and worst run-to-run ratio (max/min of the two throughputs), the median
relative CI width, and how many stitches the profile flagged as too noisy to rank. Also the
machine's matmul peak and the load average before, between and after.

    flock /tmp/snnet-bench.lock .venv/bin/python benchmarks/repeatability.py \\
        [--deit engines/deit-12] [--demo engines/demo-random/fp32]

``--deit`` is exported by ``benchmarks/load_shift.py`` (12 DeiT stitches, random weights);
``--demo`` is the demo family ('digits') exported with random weights when absent (speed does not
depend on the weights), benched with the demo's own settings (``DemoSettings``).
Writes benchmarks/results/repeatability.json and .md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from snnet_export.bench.ties import DEFAULT_TARGET, relation  # standard library only

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def compare(a: dict, b: dict) -> dict:
    from snnet_export.bench.stats import spearman

    out = {}
    for batch in a["batches"]:
        ta = {r["id"]: r for r in a["stitches"] if r["batch"] == batch}
        tb = {r["id"]: r for r in b["stitches"] if r["batch"] == batch}
        ids = sorted(ta)
        x = np.array([ta[i]["throughput"] for i in ids])
        y = np.array([tb[i]["throughput"] for i in ids])
        ratio = np.maximum(x, y) / np.minimum(x, y)
        # pairs bench calls separated (bench.ties.relation) in both runs, and of those in opposite orders
        opposite, both = 0, 0
        sampling = a.get("environment", {}).get("timing", {}).get("sampling") or {}
        width = 2.0 * float(sampling.get("ci_target") or DEFAULT_TARGET)  # the profile's own tie width
        ma, mb = ({i: {"p50": t[i]["latency_ms"]["p50"], "ci": t[i]["latency_ms"]["ci95"]} for i in ids}
                  for t in (ta, tb))
        for k, i in enumerate(ids):
            for j in ids[k + 1:]:
                sa = _order(ma[i], ma[j], width)
                sb = _order(mb[i], mb[j], width)
                if sa and sb:
                    both += 1
                    opposite += sa != sb
        out[str(batch)] = {"stitches": len(ids), "spearman": round(spearman(x, y), 4),
                           "median_ratio": round(float(np.median(ratio)), 4), "worst_ratio": round(float(ratio.max()), 3),
                           "pairs_resolved_in_both": both, "pairs_opposite": opposite,
                           "resolved_share": [p["quality"]["batches"][str(batch)].get("resolved_share") for p in (a, b)],
                           "tie_groups": [len(p["quality"]["batches"][str(batch)].get("tie_groups", [])) for p in (a, b)],
                           "median_rel_ci": [round(float(np.median([ta[i]["rel_ci"] for i in ids])), 4),
                                             round(float(np.median([tb[i]["rel_ci"] for i in ids])), 4)],
                           "noisy": [len(p["quality"]["batches"][str(batch)]["noisy"]) for p in (a, b)],
                           "of_peak_median": [round(float(np.median([t[i]["efficiency"].get("of_peak", np.nan)
                                                                     for i in ids])), 3) for t in (ta, tb)]}
    return out


def _order(a: dict, b: dict, width: float) -> int:
    """+1 / -1 when bench calls the ``{"p50", "ci"}`` measurements ``a`` and ``b`` separated
    (``a`` faster / slower), else 0."""
    if relation(a, b, width) != "separated":
        return 0
    return 1 if a["p50"] < b["p50"] else -1


def twice(folder: Path, **kw) -> dict:
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.bench.stats import machine_state

    runs, states, secs = [], [machine_state()], []
    for _ in range(2):
        t0 = time.perf_counter()
        runs.append(profile_from_engines(folder, write=False, progress=False, **kw))
        secs.append(round(time.perf_counter() - t0, 1))
        states.append(machine_state())
    return {"folder": str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder),
            "settings": {k: v for k, v in kw.items()}, "seconds": secs,
            "load_average": [s["load_average"] for s in states],
            "matmul_peak_gflops": [r["environment"]["matmul_peak"]["gflops"] for r in runs],
            "batches": compare(*runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deit", type=Path, default=ROOT / "engines/deit-12")
    ap.add_argument("--demo", type=Path, default=ROOT / "engines/demo-random/fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--deit-batches", default="1")
    ap.add_argument("--skip", choices=["deit", "demo"], default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from snnet_export.demo import DemoSettings

    res: dict = {"threads": args.threads}
    if args.skip != "deit":
        res["deit"] = twice(args.deit, batches=args.deit_batches, threads=args.threads)  # bench defaults
        print(json.dumps(res["deit"]), flush=True)
    if args.skip != "demo":
        if not (args.demo / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "snnet_export.cli", "export", "digits", "random", "-o",
                            str(args.demo)], check=True)
        s = DemoSettings()
        res["demo"] = twice(args.demo, batches=s.batches, runs=s.bench_runs, min_seconds=s.bench_seconds,
                            rounds=s.bench_rounds, warmup=2, threads=s.bench_threads, ci_target=s.bench_ci_target,
                            time_budget=s.bench_time_budget)
        print(json.dumps(res["demo"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "repeatability.json"
    old = json.loads(out.read_text()) if out.is_file() else {}
    old.update(res)
    out.write_text(json.dumps(old, indent=1))
    render(old)


def render(res: dict) -> None:
    lines = ["# Repeatability: two back-to-back `bench` runs", "",
             "Goal: Spearman rho >= 0.95 and 0 pairs resolved in opposite orders (issue 20; the median run-to-run "
             "throughput ratio <= 1.05 was issue 12's).", "",
             "| folder | settings | batch | stitches | Spearman rho | pairs resolved in both runs / in opposite orders "
             "| resolved or tied (run 1 / 2) | tie groups | median ratio | worst ratio | median CI width "
             "(run 1 / 2) | median of matmul peak | load average (before, between, after) | "
             "seconds per run |", "|" + "---|" * 14]
    for key in ("deit", "demo"):
        if key not in res:
            continue
        d = res[key]
        sett = ", ".join(f"{k}={v}" for k, v in d["settings"].items())
        for batch, c in d["batches"].items():
            share = " / ".join("-" if v is None else f"{100 * v:.0f}%" for v in c.get("resolved_share", [None, None]))
            lines.append(f"| {d['folder']} | {sett} | {batch} | {c['stitches']} | **{c['spearman']}** | "
                         f"{c.get('pairs_resolved_in_both', '-')} / **{c.get('pairs_opposite', '-')}** | {share} | "
                         f"{c.get('tie_groups', '-')} | {c['median_ratio']} | {c['worst_ratio']} | "
                         f"{100 * c['median_rel_ci'][0]:.1f}% / {100 * c['median_rel_ci'][1]:.1f}% | "
                         f"{c['of_peak_median']} | {d['load_average']} | {d['seconds']} |")
    lines += ["", "Matmul peak (GFLOP/s, per run): " + "; ".join(f"{k} {res[k]['matmul_peak_gflops']}"
                                                               for k in ("deit", "demo") if k in res), ""]
    (RESULTS / "repeatability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
