"""The machine's own FP32 matmul limit, measured in the same run and with the same threads.

A speed-up over PyTorch, or an images/s figure, means little across machines (the same script
gave 2.0x on one 2-core VM and 1.1x on another of the same kind). Expressed as a fraction of what
this CPU's best SGEMM reaches right now, it travels. ``matmul_peak`` times ONNX Runtime's MLAS
SGEMM (weights prepacked: its fastest path) on DeiT-B's MLP shapes at batch 1 and 16, and NumPy's
BLAS on the large one when ``threadpoolctl`` can pin its threads; the peak is the best of them.
Imports NumPy; ONNX Runtime and onnx lazily.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: DeiT-B MLP fc1: [tokens, 768] x [768, 3072]; 197 tokens per image
K, N, TOKENS = 768, 3072, 197


def _best_seconds(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up (also packs the weights)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_matmul(threads: int, b: np.ndarray) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    from ..runtime.ort.runner import session_options
    from ..deps import require

    ort = require("onnxruntime", "measuring the matmul peak")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", K])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["m", N])],
        initializer=[numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = session_options(threads, share_weights=False, stop_spinning=True)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def matmul_peak(threads: int, reps: int = 5) -> dict[str, Any]:
    """Best FP32 GFLOP/s of this machine's SGEMM on DeiT-B MLP shapes with ``threads`` threads.

    Returns:
        ``{"gflops": peak, "ort_b1": .., "ort_b16": .., "numpy_b16": .. or None, "threads": ..,
        "shape": "[197*batch, 768] x [768, 3072]", "seconds": ..}``; GFLOP/s count a multiply-add
        as 2 FLOPs.
    """
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    b = rng.standard_normal((K, N)).astype(np.float32)
    out: dict[str, Any] = {"threads": threads, "shape": f"[{TOKENS}*batch, {K}] x [{K}, {N}] fp32",
                           "flop_convention": "2 per multiply-add"}
    sess = _ort_matmul(threads, b)
    for batch in (1, 16):
        a = rng.standard_normal((TOKENS * batch, K)).astype(np.float32)
        sec = _best_seconds(partial(sess.run, None, {"a": a}), reps)
        out[f"ort_b{batch}"] = round(2.0 * a.shape[0] * K * N / sec / 1e9, 1)
    out["numpy_b16"] = _numpy_gflops(threads, b, rng, reps)
    out["gflops"] = max(v for k, v in out.items() if k.endswith(("_b1", "_b16")) and v)
    out["seconds"] = round(time.perf_counter() - t_start, 2)
    log.debug("matmul peak: %s", out)
    return out


def _numpy_gflops(threads: int, b: np.ndarray, rng: np.random.Generator, reps: int) -> float | None:
    """NumPy SGEMM GFLOP/s with its BLAS pinned to ``threads`` (``None`` without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    a = rng.standard_normal((TOKENS * 16, K)).astype(np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        sec = _best_seconds(lambda: a @ b, reps)
    return round(2.0 * a.shape[0] * K * N / sec / 1e9, 1)


def peak_of_run(peaks: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of several ``matmul_peak`` results of one run (before / after), with all of them listed."""
    best = dict(max(peaks, key=lambda p: p["gflops"]))
    best["measurements_gflops"] = [p["gflops"] for p in peaks]
    return best


def achieved(macs_per_image: float, batch: int, p50_ms: float, peak_gflops: float | None) -> dict[str, float]:
    """``{"gflops": achieved GFLOP/s, "of_peak": fraction of the peak}`` of one measured record."""
    gflops = 2.0 * macs_per_image * batch / (p50_ms / 1e3) / 1e9
    out = {"gflops": round(gflops, 2)}
    if peak_gflops:
        out["of_peak"] = round(gflops / peak_gflops, 4)
    return out


def add_efficiency(records: list[dict[str, Any]], manifest: Mapping[str, Any], peak: float | None) -> None:
    """Set each record's ``efficiency`` (achieved GFLOP/s and fraction of ``peak``) in place."""
    macs = {e["id"]: e.get("flops") for e in manifest["configs"]}
    for r in records:
        if macs.get(r["id"]):
            r["efficiency"] = achieved(macs[r["id"]], r["batch"], r["latency_ms"]["p50"], peak)
