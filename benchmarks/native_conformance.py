"""Replay conformance traces of seeds the tests do not use through the native library; one run.

For each seed: ``generate_traces(seed, count)`` (the real Python Selector decides), then
``snnet-select-replay`` from ``make native``. Records traces, events and disagreements per seed.
The tests use seeds 20261203 (``make native-test``), 424242 (tests/test_native.py) and 3 (its CLI
test); the default seeds here avoid them (a seed the tests use is refused).

    make native && nice -n 15 .venv/bin/python benchmarks/native_conformance.py [--seeds 1 2] [--count 500]

Writes benchmarks/results/native_conformance.json and .md.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import stamp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPLAY = ROOT / ".native-build" / "release" / "snnet-select-replay"
TEST_SEEDS = {20261203, 424242, 3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 5, 7, 99, 31337, 987654321])
    ap.add_argument("--count", type=int, default=500)
    args = ap.parse_args()
    if TEST_SEEDS & set(args.seeds):
        sys.exit(f"seeds {sorted(TEST_SEEDS & set(args.seeds))} are the tests' own: pick others")
    if not REPLAY.is_file():
        sys.exit(f"{REPLAY} is missing: run `make native` first")
    from snnet_export.conformance import generate_traces

    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_traces(seed, args.count, tmp)
            out = subprocess.run([str(REPLAY), tmp], capture_output=True, text=True)
        m = re.search(r"replayed (\d+) traces, (\d+) events: (\d+) disagreements", out.stdout)
        runs.append({"seed": seed, "traces": summary["traces"], "valid": summary["valid"], "broken": summary["bad"],
                     "events": summary["events"], "replayed_events": int(m.group(2)) if m else None,
                     "disagreements": int(m.group(3)) if m else None, "returncode": out.returncode,
                     "cases": summary["cases"]})
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "cases"}), flush=True)
    result = {"runs": runs, "traces": sum(r["traces"] for r in runs), "events": sum(r["events"] for r in runs),
              "disagreements": sum(r["disagreements"] or 0 for r in runs),
              **stamp()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "native_conformance.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Native selector conformance on seeds the tests do not use", "",
          f"{result['traces']} traces, {result['events']} events, {result['disagreements']} disagreements. "
          f"Produced by `benchmarks/native_conformance.py` at commit {result['commit']} on {result['created']}: "
          "the Python Selector decides each trace, the C library (`make native`, `snnet-select-replay`) "
          "replays it. The tests use seeds 20261203, 424242 and 3, none of these.", "",
          "| seed | traces | valid folders | broken folders | events | disagreements | exit |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['seed']} | {r['traces']} | {r['valid']} | {r['broken']} | {r['events']} | {r['disagreements']} | "
           f"{r['returncode']} |" for r in runs]
    (RESULTS / "native_conformance.md").write_text("\n".join(md) + "\n")
    return 1 if result["disagreements"] or any(r["returncode"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
