"""Benchmark (issue 21, item 3): DeiT-B at batch 16 with MLAS-prepacked weights loaded from a file.

The Python API of onnxruntime has no ``PrepackedWeightsContainer`` (C/C++ only), so sessions cannot
share packed weights in memory. What it has: ``session.save_external_prepacked_constant_initializers``
writes an optimized model whose external data holds the weights *and* their packed form; a session
over that model maps the packed weights from the file instead of packing its own copy. This times,
interleaved, ``shared`` (one zero-copy copy, packing on every call), ``fast`` (fused attention +
private prepacked copy) and ``saved-prepacked`` (stock graph, packed weights mapped from the saved
file), with the anonymous memory each session adds and the size of the saved file::

    flock /work/bench.lock .venv/bin/python benchmarks/ort_prepacked_saved.py --folder engines/deit71 --id 2

Writes benchmarks/results/ort_prepacked_saved.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def save_prepacked(folder: Path, entry: dict[str, Any], weights: Any, out: Path, threads: int) -> None:
    """Let ORT write ``out`` (optimized graph) and ``out.bin`` (weights + their packed form)."""
    import onnxruntime as ort

    from snnet_export.runtime.ort.runner import session_options

    so = session_options(threads, share_weights=False)
    so.optimized_model_filepath = str(out)
    so.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", out.name + ".bin")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    keep = []
    for name, index in entry["initializers"]:
        keep.append(ort.OrtValue.ortvalue_from_numpy(weights.array(index)))
        so.add_initializer(name, keep[-1])
    ort.InferenceSession(str(folder / entry["onnx"]), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--id", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import onnxruntime as ort

    from snnet_export.bench.measure import ort_options
    from snnet_export.bench.peak import matmul_peak
    from snnet_export.engine_folder.manifest import config_entry, load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort import runner as R

    m = load_manifest(args.folder)
    entry, weights = config_entry(m, args.id), WeightFile(args.folder, m["weights"])
    tmp = Path(tempfile.mkdtemp(prefix="ort_prepacked_"))
    saved = tmp / f"stitch_{args.id:03d}.opt.onnx"
    save_prepacked(args.folder, entry, weights, saved, args.threads)
    peak = matmul_peak(args.threads)
    sessions, anon = {}, {}
    for mode in ("shared", "fast", "saved-prepacked"):
        a0 = anon_mib()
        if mode == "saved-prepacked":
            so = R.session_options(args.threads, share_weights=False, stop_spinning=True, shared_arena=True)
            sessions[mode] = ort.InferenceSession(str(saved), so, providers=["CPUExecutionProvider"])
        else:
            sessions[mode] = R.ort_session(args.folder, entry, weights, threads=args.threads, shared_arena=True,
                                           **ort_options(mode))
        anon[mode] = round(anon_mib() - a0, 1)
    x = np.random.default_rng(0).standard_normal((args.batch, *m["input_shape"])).astype(np.float32)
    lat: dict[str, list[float]] = {k: [] for k in sessions}
    load_before = os.getloadavg()
    for s in sessions.values():
        s.run(None, {"input": x})
    for _ in range(args.runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"input": x})
            lat[k].append(time.perf_counter() - t0)
    gflop = 2 * entry["flops"] / 1e9 * args.batch
    rows = [{"mode": k, "p50_ms": round(1e3 * float(np.median(v)), 1), "min_ms": round(1e3 * min(v), 1),
             "gflops": round(gflop / float(np.median(v)), 1), "of_peak": round(gflop / float(np.median(v)) / peak["gflops"], 3),
             "anon_mib_at_open": anon[k]} for k, v in lat.items()]
    res = {"folder": str(args.folder), "id": args.id, "batch": args.batch, "threads": args.threads, "runs": args.runs,
           "onnxruntime": ort.__version__, "peak": peak, "load_before": load_before, "load_after": os.getloadavg(),
           "saved_file_mib": round((saved.parent / (saved.name + ".bin")).stat().st_size / 2**20, 1), "rows": rows}
    del sessions
    shutil.rmtree(tmp)  # the saved model and its ~2x-the-weights external data
    (RESULTS / "ort_prepacked_saved.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"# DeiT-B (stitch {args.id}) at batch {args.batch}: prepacked weights saved by ORT vs shared/fast", "",
             f"{args.threads} threads, {args.runs} interleaved runs each after one warm-up, onnxruntime {ort.__version__}; "
             f"matmul peak {peak['gflops']} GFLOP/s (same run); load average before "
             f"{[round(v, 2) for v in load_before]}, after {[round(v, 2) for v in res['load_after']]}. The saved "
             f"optimized model's external data (weights + packed weights) is {res['saved_file_mib']} MiB, "
             "written for this one stitch graph.", "",
             "| mode | p50 ms | min ms | GFLOP/s | of peak | MiB anon at open |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r['mode']}` | {r['p50_ms']} | {r['min_ms']} | {r['gflops']} | {100 * r['of_peak']:.0f}% | "
              f"{r['anon_mib_at_open']:.0f} |" for r in rows]
    (RESULTS / "ort_prepacked_saved.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
