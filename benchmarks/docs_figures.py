"""The figures docs/measurement.md quotes, rendered from the committed results (never typed by hand).

    .venv/bin/python benchmarks/docs_figures.py          # rewrite the block in docs/measurement.md
    .venv/bin/python benchmarks/docs_figures.py --check  # exit 1 when the block is stale

The block between ``<!-- figures:start -->`` and ``<!-- figures:end -->`` is generated from
``benchmarks/results/{recovery_check,load_shift,repeatability}.json`` and the demo's committed
report and profile (``benchmarks/results/demo/``); tests/test_docs_figures.py fails when it is stale.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "measurement.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def _json(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _demo() -> list[str]:
    report = RESULTS / "demo" / "report.md"
    prof = next(iter(sorted((RESULTS / "demo").glob("profile.*.json"))), None)
    out = []
    if report.is_file():
        m = re.search(r"R\^2 = ([0-9.]+) over (\d+) stitches", report.read_text())
        if m:
            old = "" if prof is not None else " [the committed demo report predates issue 20's bench; not re-run yet]"
            out.append(f"- FLOPs vs measured latency in the demo{old}, batch 1: R² = **{m.group(1)}** over {m.group(2)} "
                       "stitches (`benchmarks/results/demo/report.md`).")
    if prof is not None:
        p = json.loads(prof.read_text())
        env = p.get("environment") or {}
        for batch, q in sorted((p.get("quality") or {}).get("batches", {}).items(), key=lambda kv: int(kv[0])):
            if "resolved_share" in q:
                out.append(f"- Demo bench, batch {batch}: **{100 * q['resolved_share']:.0f}%** of stitches resolved "
                           f"against their FLOPs neighbours or tied, {len(q['tie_groups'])} tie groups, median CI "
                           f"width {100 * q['median_rel_ci']:.1f}% (`benchmarks/results/demo/{prof.name}`; load "
                           f"{env.get('load_average')}, matmul peak {(env.get('matmul_peak') or {}).get('gflops')} "
                           "GFLOP/s).")
    return out


def render() -> str:
    lines: list[str] = []
    rc = _json("recovery_check.json")
    if rc:
        n = len(rc["runs"])
        calls = n * sum(rc["calls"])
        sw = sum(sum(r["switches"].values()) for r in rc["runs"])
        lines.append(f"- Two busy processes on, then off, {n} runs in a row: **{rc['passed']} of {n}** passed "
                     f"({rc.get('passed_or_better', '-')} of {n} counting a more accurate stitch that holds the budget); "
                     f"{1000 * sw / calls:.1f} switches per 1,000 calls; load average "
                     f"{rc['machine_before']['load_average']} before, {rc['machine_after']['load_average']} after, "
                     f"matmul peak {rc['matmul_peak']['gflops']} GFLOP/s (`benchmarks/results/recovery_check.json`).")
    ls = _json("load_shift.json")
    if ls and ls.get("goals"):
        g = ls["goals"]
        lines.append(f"- Load shift (12 DeiT stitches, p99 budget {ls['budget_ms']} ms): settled **{g['load_calls_to_settle']}** "
                     f"calls after the load step, **{g['recovered_calls_to_settle']}** calls after it ended, back on the "
                     f"quiet stitch or a tied one: {g['back_to_quiet_stitch_or_tied']}, {g['top1_below_oracle_best']} "
                     f"Top-1 points below the oracle's best, {g['switches_per_1000']} switches per 1,000 calls; load "
                     f"{ls['machine_before']['load_average']}, matmul peak {ls['matmul_peak']['gflops']} GFLOP/s "
                     "(`benchmarks/results/load_shift.json`).")
    rp = _json("repeatability.json")
    if rp and "demo" in rp:
        d = rp["demo"]
        for batch, c in d["batches"].items():
            old = "" if "pairs_opposite" in c else " [issue 12's run, before sampling until resolved; not re-run yet]"
            lines.append(f"- Back-to-back demo benches{old}, batch {batch}: Spearman **{c['spearman']}**, "
                         f"**{c.get('pairs_opposite', '-')}** of {c.get('pairs_resolved_in_both', '-')} pairs resolved in "
                         f"both runs in opposite orders, resolved or tied {c.get('resolved_share')}; load "
                         f"{d['load_average'][0]}, matmul peak {d['matmul_peak_gflops']} GFLOP/s "
                         "(`benchmarks/results/repeatability.json`).")
    lines += _demo()
    return "\n".join([START, ""] + lines + ["", END])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = DOC.read_text()
    block = text[text.index(START):text.index(END) + len(END)]
    new = render()
    if args.check:
        sys.exit(0 if block == new else 1)
    DOC.write_text(text.replace(block, new))
    print(new)


if __name__ == "__main__":
    main()
