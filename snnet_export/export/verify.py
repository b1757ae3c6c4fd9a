"""Export-time check of each stitch: ONNX Runtime against PyTorch.

Tolerances: FP32 max |ORT - PyTorch| <= 1e-4 x logit scale (the largest |logit|). FP16 (weights and
compute FP16, LayerNorm/Softmax FP32) max diff <= 2e-2 x logit scale, and the top-1 class agrees
on every sample whose reference top-1/top-2 margin exceeds that tolerance (a closer race may
legitimately flip in half precision).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..engine_folder.weight_file import WeightFile

log = logging.getLogger(__name__)

RTOL = {"fp32": 1e-4, "fp16": 2e-2}
VERIFY_BATCHES = (1, 3)


def compare_logits(ref: np.ndarray, got: np.ndarray, precision: str) -> dict[str, Any]:
    """Compare reference and runtime logits ``[B, classes]`` under ``precision``'s tolerance."""
    scale = max(float(np.abs(ref).max()), 1e-6)
    diff = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())
    limit = RTOL[precision] * scale
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    srt = np.sort(ref, axis=1)
    margin = srt[:, -1] - srt[:, -2] if ref.shape[1] > 1 else np.full(len(ref), np.inf)
    decisive = margin > limit
    agree_decisive = bool((top_ref[decisive] == top_got[decisive]).all())
    return {"max_abs_diff": diff, "rel_diff": diff / scale, "limit": limit,
            "top1_agree": float((top_ref == top_got).mean()),
            "ok": bool(np.isfinite(got).all() and diff <= limit and agree_decisive)}


def verify_stitch(snnet: Any, folder: Path, entry: dict[str, Any], weights: WeightFile,
                  precision: str, seed: int = 0) -> dict[str, Any]:
    """Run the saved stitch in ONNX Runtime at batch 1 and 3 and compare with PyTorch."""
    import torch

    from ..runtime.ort.runner import OrtRunner, ort_session

    sess = ort_session(folder, entry, weights)
    g = torch.Generator().manual_seed(seed + entry["id"])
    results = []
    for batch in VERIFY_BATCHES:
        x = torch.randn(batch, *snnet.input_size, generator=g)
        with torch.no_grad():
            ref = snnet(x, entry["id"]).float().numpy()
        results.append(compare_logits(ref, OrtRunner(sess)(x.numpy()), precision))
    worst = max(results, key=lambda r: r["rel_diff"])
    return {**worst, "ok": all(r["ok"] for r in results),
            "top1_agree": min(r["top1_agree"] for r in results), "batches": list(VERIFY_BATCHES)}
