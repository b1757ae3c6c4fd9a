"""Checks of exported stitches: against PyTorch at export time, and of the files on disk.

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

from .errors import VerifyError
from .io import sha256_file
from .manifest import load_manifest
from .runtime.weights import WeightFile, check_location

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

    from .runtime.ort_backend import ort_session, run_session

    sess = ort_session(folder, entry, weights)
    g = torch.Generator().manual_seed(seed + entry["id"])
    results = []
    for batch in VERIFY_BATCHES:
        x = torch.randn(batch, *snnet.input_size, generator=g)
        with torch.no_grad():
            ref = snnet(x, entry["id"]).float().numpy()
        results.append(compare_logits(ref, run_session(sess, x.numpy()), precision))
    worst = max(results, key=lambda r: r["rel_diff"])
    return {**worst, "ok": all(r["ok"] for r in results),
            "top1_agree": min(r["top1_agree"] for r in results), "batches": list(VERIFY_BATCHES)}


def verify_folder(folder: str | Path, check_graphs: bool = True) -> dict[str, Any]:
    """Re-check an engine folder on disk; raise one :class:`VerifyError` listing every problem.

    Checks: the manifest; the weight file's size, SHA-256 and every tensor's SHA-256; per stitch
    the ONNX file's presence and SHA-256, the ONNX checker, and that every external-data reference
    is the folder's weight file at a recorded tensor's offset and length.
    """
    import onnx

    folder = Path(folder)
    manifest = load_manifest(folder)
    wmeta = manifest["weights"]
    problems: list[str] = []
    try:
        wf = WeightFile(folder, wmeta)
        problems += wf.verify_all()
        if wmeta.get("sha256") and sha256_file(wf.path) != wmeta["sha256"]:
            problems.append(f"{wf.path.name}: whole-file SHA-256 differs from the manifest")
    except VerifyError as exc:
        problems.append(str(exc))
    spans = {(t["offset"], t["length"]) for t in wmeta["tensors"]}
    for entry in manifest["configs"]:
        problems += _check_entry(onnx, folder, entry, wmeta["file"], spans, check_graphs)
    if problems:
        raise VerifyError(f"{folder}: {len(problems)} problem(s): " + "; ".join(problems))
    return {"folder": str(folder), "stitches": len(manifest["configs"]),
            "tensors": len(wmeta["tensors"]), "weight_bytes": wmeta["size"]}


def _check_entry(onnx: Any, folder: Path, entry: dict[str, Any], weight_file: str,
                 spans: set[tuple[int, int]], check_graphs: bool) -> list[str]:
    path = folder / entry["onnx"]
    tag = f"stitch {entry['id']} ({entry['onnx']})"
    if not path.is_file():
        return [f"{tag}: file missing"]
    problems = []
    if sha256_file(path) != entry["onnx_sha256"]:
        problems.append(f"{tag}: SHA-256 differs from the manifest")
    if not entry.get("verified", {}).get("ok"):
        problems.append(f"{tag}: not verified against PyTorch (re-run export)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf errors
        return problems + [f"{tag}: not a readable ONNX file: {str(exc).splitlines()[0]}"]
    bad_location = False
    for name, info in graph_external_data(model):
        try:
            check_location(folder, info.get("location", ""), weight_file)
        except VerifyError as exc:
            problems.append(f"{tag}: initializer {name}: {exc}")
            bad_location = True
            continue
        if (int(info.get("offset", 0)), int(info.get("length", -1))) not in spans:
            problems.append(f"{tag}: initializer {name} points to bytes no tensor owns")
    if check_graphs and not bad_location:
        try:
            onnx.checker.check_model(str(path))  # path form: external data resolved in the folder
        except Exception as exc:  # noqa: BLE001 - checker errors
            problems.append(f"{tag}: ONNX checker: {str(exc).splitlines()[0]}")
    return problems


def graph_external_data(model: Any) -> list[tuple[str, dict[str, str]]]:
    """``[(initializer name, {location, offset, length}), ...]`` of a loaded ONNX model."""
    return [(init.name, {e.key: e.value for e in init.external_data})
            for init in model.graph.initializer if init.data_location == 1]  # TensorProto.EXTERNAL
