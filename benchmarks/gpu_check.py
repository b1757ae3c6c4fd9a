"""`make gpu-check`: the first thing to run on a machine with an NVIDIA GPU (and TensorRT).

Exports a handful of DeiT-Ti/S/B stitches (random weights; FP32, and FP16 from it) and then:

1. PyTorch FP16 eager, per stitch, on the GPU (needs only torch with CUDA).
2. With TensorRT: `check`, then FP16 engines (target dgpu) and weight-stripped engines refitted at
   load (target dgpu-stripped, same settings); runs both on the same inputs and compares them with
   ONNX Runtime FP32 on CPU. Tolerances (FP16 vs FP32 logits of random-weight DeiTs):
   max |trt - ort| <= 0.05 * max |ort| per stitch; stripped + refit vs normal engine: max abs
   difference <= 1e-3 (REFIT_IDENTICAL: same kernels, same weights).
3. With TensorRT: TensorRT vs PyTorch FP16 eager, interleaved in one run, batch 1 and 16 (median
   and p90 latency, and their ratio).
4. With TensorRT: the selector's `trt` backend called from 8 threads at once (each call checked
   against the single-threaded output of the same stitch) while the main thread switches budgets.

Writes benchmarks/results/gpu_check.json and .md with the GPU, driver, versions, load average,
every figure, and the exact list of steps skipped and why. Without a CUDA GPU it prints that it
ran nothing and exits 0 without writing a results file (a CPU machine is not a failed check;
``--require-gpu`` makes it exit 3 instead). Without TensorRT it runs step 1 and lists 2-4 as skipped.
A failed comparison exits 1.

    .venv/bin/python benchmarks/gpu_check.py [--configs 0,10,30,50,70] [--workdir /tmp/snnet-gpu-check]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FAMILY = "deit-tsb"
BATCHES = (1, 16)
CHW = (3, 224, 224)  # DeiT input
TRT_REL_TOL = 0.05  # max |trt - ort| / max |ort|
REFIT_ABS_TOL = 1e-3
THREADS = 8


def gpu_status() -> tuple[bool, str]:
    """(a CUDA GPU is usable from torch, what was found)."""
    try:
        import torch
    except ImportError as exc:
        return False, f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return True, torch.cuda.get_device_name(0)


def skipped_steps(gpu: bool, tensorrt: bool) -> list[str]:
    """The steps this machine cannot run, each with the reason (the results file lists them)."""
    if not gpu:
        return ["all steps: no CUDA GPU"]
    if tensorrt:
        return []
    why = "TensorRT is not installed (pip install 'snnet-export[trt]')"
    return [f"check + FP16 engine build (dgpu): {why}",
            f"stripped + refit engine build (dgpu-stripped): {why}",
            f"TensorRT vs ONNX Runtime FP32 output comparison: {why}",
            f"TensorRT vs PyTorch FP16 eager benchmark: {why}",
            f"selector trt backend from {THREADS} threads: {why}"]


def export(workdir: Path, configs: str) -> tuple[Path, Path]:
    from snnet_export.export.stitches import export_stitches

    fp32, fp16 = workdir / "deit-fp32", workdir / "deit-fp16"
    export_stitches(FAMILY, "random", fp32, precision="fp32", configs=configs, batch_max=16, progress=True)
    export_stitches(FAMILY, "random", fp16, precision="fp16", configs=configs, batch_max=16, from_folder=fp32,
                    progress=True)
    return fp32, fp16


def torch_fp16(folder: Path, ids: list[int], x: np.ndarray) -> tuple[dict[int, Callable[[], Any]], dict]:
    from snnet_export.bench.measure import torch_baseline
    from snnet_export.engine_folder.manifest import load_manifest

    make, env = torch_baseline(load_manifest(folder), threads=1, cuda=True)
    return {i: (lambda r=make(i): r(x)) for i in ids}, env


def stats(seconds: list[float], batch: int) -> dict[str, Any]:
    from snnet_export.bench.timing import latency_stats

    return latency_stats(seconds, batch)


def bench(fns: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    from snnet_export.bench.timing import time_interleaved

    return time_interleaved(fns, warmup=10, runs=50, min_seconds=1.0)


def stripped_target(workdir: Path) -> Path:
    """dgpu's settings under another name, so stripped engines get their own folder."""
    from snnet_export.engine_build.targets import load_target

    d = load_target("dgpu").to_dict()
    d["name"], d["description"] = "dgpu-stripped", "dgpu, weight-stripped engines refitted at load"
    path = workdir / "dgpu-stripped.yaml"
    path.write_text(json.dumps(d))  # JSON is YAML
    return path


def trt_steps(fp32: Path, fp16: Path, ids: list[int], workdir: Path, out: dict[str, Any]) -> bool:
    """Steps 2-4; fills ``out`` and returns False when a comparison fails."""
    from snnet_export.engine_build import build_engines
    from snnet_export.engine_build.check import check_folder
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    ok = True
    out["check"] = check_folder(fp16, "dgpu").summary()
    t0 = time.perf_counter()
    build_engines(fp16, "dgpu", configs=ids, progress=False)
    build_engines(fp16, stripped_target(workdir), configs=ids, strip_weights=True, progress=False)
    out["build_seconds_both"] = round(time.perf_counter() - t0, 1)
    rng = np.random.default_rng(0)
    x = {b: rng.standard_normal((b, *CHW)).astype(np.float32) for b in BATCHES}
    ort = ort_fp32(fp32, ids, x[BATCHES[-1]])
    compare: dict[int, dict[str, float]] = {}
    with SharedScratch() as scratch:
        eng = load_engines(fp16, "dgpu", ids, scratch=scratch)
        strip = load_engines(fp16, "dgpu-stripped", ids, scratch=scratch)
        for i in ids:
            y, ys = eng[i].run(x[BATCHES[-1]]), strip[i].run(x[BATCHES[-1]])
            rel = float(np.abs(y - ort[i]).max() / np.abs(ort[i]).max())
            refit = float(np.abs(y - ys).max())
            compare[i] = {"max_rel_diff_vs_ort_fp32": round(rel, 5), "max_abs_diff_stripped_vs_normal": refit,
                          "top1_agree_vs_ort_fp32": float((y.argmax(1) == ort[i].argmax(1)).mean())}
            ok &= rel <= TRT_REL_TOL and refit <= REFIT_ABS_TOL
        out["compare"] = compare
        timings: dict[str, dict[str, Any]] = {}
        for b in BATCHES:
            tf, out["torch_env"] = torch_fp16(fp16, ids, x[b])
            fns = {f"trt/{i}": (lambda e=eng[i], xb=x[b]: e.run(xb)) for i in ids}
            fns.update({f"torch/{i}": fn for i, fn in tf.items()})
            lat = bench(fns)
            for i in ids:
                t, p = stats(lat[f"trt/{i}"], b), stats(lat[f"torch/{i}"], b)
                timings[f"{i}/b{b}"] = {"trt": t, "torch_fp16": p, "speedup_p50":
                                        round(p["latency_ms"]["p50"] / t["latency_ms"]["p50"], 3)}
        out["timings"] = timings
    out["selector_threads"] = selector_threads(fp16, x[1])
    ok &= out["selector_threads"]["mismatches"] == 0 and not out["selector_threads"]["errors"]
    return ok


def ort_fp32(folder: Path, ids: list[int], x: np.ndarray) -> dict[int, np.ndarray]:
    """ONNX Runtime FP32 logits (CPU) of each stitch: the reference the engines are compared with."""
    from snnet_export.engine_folder.manifest import load_manifest
    from snnet_export.engine_folder.weight_file import WeightFile
    from snnet_export.runtime.ort.runner import ort_session

    manifest = load_manifest(folder)
    entries = {int(e["id"]): e for e in manifest["configs"]}
    weights = WeightFile(folder, manifest["weights"])
    out = {}
    for i in ids:
        sess = ort_session(folder, entries[i], weights)
        out[i] = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return out


def selector_threads(folder: Path, x: np.ndarray) -> dict[str, Any]:
    """Measure a trt profile, open the selector on it, call it from THREADS threads while switching."""
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.runtime import Selector

    profile_from_engines(folder, backend="trt", target="dgpu", batches=[1], warmup=3, runs=10,
                         min_seconds=0.2, progress=False)
    sel = Selector(folder, backend="trt", target="dgpu", resident="all")
    want = {i: sel.run(x, stitch=i) for i in sel.resident}
    errors: list[str] = []
    mismatches = [0]
    calls = [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for k in range(50):
                i = sel.resident[(n + k) % len(sel.resident)]
                y = sel.run(x, stitch=i)
                with lock:
                    calls[0] += 1
                    mismatches[0] += int(np.abs(y - want[i]).max() > REFIT_ABS_TOL)
                sel(x)  # the active stitch, switched by the main thread meanwhile
        except Exception as exc:  # noqa: BLE001 - reported in the results file
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    speeds = sorted(c.throughput[1] for c in sel.candidates.values())
    while any(t.is_alive() for t in threads):
        for s in speeds:
            sel.set_budget(min_throughput=s)
        time.sleep(0.001)
    for t in threads:
        t.join()
    return {"threads": THREADS, "calls_checked": calls[0], "mismatches": mismatches[0], "errors": errors[:5]}


def environment(gpu_name: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"gpu": gpu_name, "python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "host": platform.node(),
                           "loadavg": [round(v, 2) for v in os.getloadavg()]}
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError:
        env["tensorrt"] = None
    return env


def write_results(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# gpu-check ({result['status']})", "", f"Environment: `{json.dumps(result['environment'])}`", ""]
    lines += ["Skipped:"] + ([f"- {s}" for s in result["skipped"]] or ["- nothing"])
    lines += ["", "| stitch/batch | PyTorch FP16 p50 ms | TensorRT p50 ms | speed-up |", "|---|---|---|---|"]
    for key, t in result.get("timings", {}).items():
        lines.append(f"| {key} | {t['torch_fp16']['latency_ms']['p50']} | "
                     f"{t['trt']['latency_ms']['p50'] if t.get('trt') else '-'} | {t.get('speedup_p50', '-')} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="0,10,30,50,70", help="DeiT stitch ids (default: 0,10,30,50,70)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/snnet-gpu-check"))
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    ap.add_argument("--require-gpu", action="store_true", help="exit 3 when there is no CUDA GPU")
    args = ap.parse_args(argv)
    gpu, found = gpu_status()
    if not gpu:
        print(f"gpu-check: ran nothing and wrote no results file: {found}.")
        return 3 if args.require_gpu else 0
    from snnet_export.deps import is_tensorrt_available

    has_trt = is_tensorrt_available()
    ids = [int(i) for i in args.configs.split(",")]
    result: dict[str, Any] = {"environment": environment(found), "configs": ids,
                              "skipped": skipped_steps(True, has_trt),
                              "tolerances": {"trt_vs_ort_fp32_rel": TRT_REL_TOL, "stripped_vs_normal_abs": REFIT_ABS_TOL}}
    shutil.rmtree(args.workdir, ignore_errors=True)
    fp32, fp16 = export(args.workdir, args.configs)
    ok = True
    if has_trt:
        ok = trt_steps(fp32, fp16, ids, args.workdir, result)
    else:
        timings = {}
        for b in BATCHES:
            x = np.random.default_rng(0).standard_normal((b, *CHW)).astype(np.float32)
            fns, result["torch_env"] = torch_fp16(fp16, ids, x)
            lat = bench({str(i): fn for i, fn in fns.items()})
            timings.update({f"{i}/b{b}": {"torch_fp16": stats(lat[str(i)], b)} for i in ids})
        result["timings"] = timings
    result["status"] = "ok" if ok else "FAILED: a comparison is outside its tolerance"
    result["environment"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    write_results(result, args.out)
    print(f"gpu-check: {result['status']}; skipped: {result['skipped'] or 'nothing'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
