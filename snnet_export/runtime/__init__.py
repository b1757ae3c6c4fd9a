"""Deployment-side runtime: imports NumPy and ONNX Runtime (or TensorRT) only, never torch/timm/click.

    from snnet_export.runtime import Selector

Owns: :mod:`.selector` (the runtime stitch selector), :mod:`.ort` (ONNX Runtime backend) and
:mod:`.trt` (TensorRT backend: engine loading, refit, CUDA memory). May import
:mod:`snnet_export.engine_folder` and the top-level helpers; a test imports every module here
without torch.
"""
from __future__ import annotations

from ..errors import SelectorError
from .selector import Candidate, Selector

__all__ = ["Candidate", "Selector", "SelectorError"]
