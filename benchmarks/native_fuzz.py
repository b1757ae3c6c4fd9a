"""Fuzz the native library's folder reader under ASan + UBSan: >= 100,000 mutated folders, one run.

Runs ``fuzz_folder`` (native/tests/fuzz_folder.cpp: seeded mutations of a valid manifest or
profile: bit flips, splices, truncation, hostile numbers and strings, deep nesting; each input is
opened and, when it opens, driven through budgets, observations and describe) from the
``make native-asan`` build, on four templates: the tests' tiny folder, a synthetic LeViT folder,
a synthetic 71-stitch DeiT folder, and a synthetic ResNet folder whose profile carries the fields
``bench`` writes since issue 20 (``tie_group``, ``latency_ms.p50_ci``, ``resolved``), some stitches
without accuracy and TensorRT engine records for the default target (``dgpu``). Any crash, leak, out-of-bounds access or undefined
behaviour aborts the run (``-fno-sanitize-recover=all``, LeakSanitizer on) and is counted.

    make native-asan && nice -n 15 .venv/bin/python benchmarks/native_fuzz.py

Writes benchmarks/results/native_fuzz.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import stamp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FUZZ = ROOT / ".native-build" / "asan" / "tests" / "fuzz_folder"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def run(template: Path | None, seed: int, count: int, env: dict[str, str]) -> dict:
    cmd = [str(FUZZ), str(seed), str(count)] + ([str(template)] if template else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    reports = sum(out.stderr.count(m) for m in SANITIZER_MARKS)
    rec = {"template": template.name if template else "tiny", "seed": seed, "inputs": count,
           "returncode": out.returncode, "sanitizer_reports": reports, "seconds": round(time.perf_counter() - t0, 1)}
    if out.returncode == 0:
        rec["statuses"] = {k: v for k, v in json.loads(out.stdout).items() if k.startswith("SNNET_")}
    else:
        rec["stderr_tail"] = out.stderr[-2000:]
    return rec


def ties_folder(out: Path) -> Path:
    """A synthetic ResNet folder whose profile has tie groups, p50 CIs and resolved flags, and dgpu engines."""
    from snnet_export.conformance.folders import family_table, make_manifest, make_profile

    rows = family_table("resnet")
    for k in range(1000):  # the first seed whose profile has a tie group of two or more
        rng = random.Random(f"fuzz-ties:{k}")
        manifest = make_manifest("resnet", rows, rng, unknown=0.2, targets=("dgpu",))
        prof = make_profile(rows, rng, [1, 8], unmeasured=0.0)
        if any(len(r.get("tie_group", ())) > 1 for r in prof["stitches"]):
            break
    else:
        raise RuntimeError("no seed gave a profile with a tie group")
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / "profile.synthetic.json").write_text(json.dumps(prof, indent=1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", type=int, default=90_000)
    ap.add_argument("--levit", type=int, default=10_000)
    ap.add_argument("--deit", type=int, default=1_000)
    ap.add_argument("--ties", type=int, default=20_000)
    args = ap.parse_args()
    if not FUZZ.is_file():
        sys.exit(f"{FUZZ} is missing: run `make native-asan` first")
    from snnet_export.conformance.folders import write_folder

    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1",
           "TMPDIR": "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        levit, deit = write_folder(Path(tmp) / "levit", "levit"), write_folder(Path(tmp) / "deit", "deit_tsb")
        ties = ties_folder(Path(tmp) / "resnet_ties")
        plan = [(None, 101 + k, args.tiny // 3) for k in range(3)] + [(levit, 201, args.levit), (deit, 301, args.deit),
                                                                       (ties, 401, args.ties)]
        for template, seed, count in plan:
            runs.append(run(template, seed, count, env))
            print(json.dumps(runs[-1]), flush=True)
    total = sum(r["inputs"] for r in runs)
    crashes = sum(r["returncode"] != 0 for r in runs)
    reports = sum(r["sanitizer_reports"] for r in runs)
    statuses: dict[str, int] = {}
    for r in runs:
        for k, v in r.get("statuses", {}).items():
            statuses[k] = statuses.get(k, 0) + v
    result = {"inputs": total, "crashed_runs": crashes, "sanitizer_reports": reports, "statuses": statuses,
              "runs": runs, "build": "make native-asan (Debug, -fsanitize=address,undefined -fno-sanitize-recover=all)",
              "load_average": os.getloadavg(),
              **stamp()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "native_fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Native folder-reader fuzz (ASan + UBSan)", "",
             f"{total} mutated folders, {crashes} crashed runs, {reports} sanitizer reports "
             f"(load average {result['load_average'][0]:.2f}). Produced by `benchmarks/native_fuzz.py` at commit "
             f"{result['commit']} on {result['created']}; the `resnet_ties` template's profile carries "
             "`tie_group`, `p50_ci` and `resolved`.", "",
             "| template | seed | inputs | opened | manifest errors | profile errors | selector errors | sanitizer reports |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.get("statuses", {})
        lines.append(f"| {r['template']} | {r['seed']} | {r['inputs']} | {s.get('SNNET_OK', 0)} | "
                     f"{s.get('SNNET_E_MANIFEST', 0)} | {s.get('SNNET_E_PROFILE', 0)} | {s.get('SNNET_E_SELECTOR', 0)} | "
                     f"{r['sanitizer_reports']} |")
    (RESULTS / "native_fuzz.md").write_text("\n".join(lines) + "\n")
    return 1 if crashes or reports else 0


if __name__ == "__main__":
    raise SystemExit(main())
