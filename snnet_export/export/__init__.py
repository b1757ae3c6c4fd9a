"""Export: each stitch traced to ONNX, weights stored once, FP16 conversion, export-time verification.

Owns: :mod:`.stitches` (``export_stitches``), :mod:`.weight_store` (write side of the shared,
content-addressed weight file), :mod:`.fp16` (deterministic FP32 -> FP16 graphs), :mod:`.verify`
(ONNX Runtime vs PyTorch per stitch). Writes the artefacts described by
:mod:`snnet_export.engine_folder`.
May import: torch, onnx, :mod:`snnet_export.model`, :mod:`snnet_export.engine_folder`, the
ONNX Runtime runner in :mod:`snnet_export.runtime.ort`, and the top-level helpers.
"""
from __future__ import annotations

from .stitches import export_stitches

__all__ = ["export_stitches"]
