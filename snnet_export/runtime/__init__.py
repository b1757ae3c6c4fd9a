"""Deployment-side runtime: imports NumPy and ONNX Runtime (or TensorRT) only, never torch/timm/click.

    from snnet_export.runtime import Selector
"""
from __future__ import annotations

from .selector import Candidate, Selector, SelectorError

__all__ = ["Candidate", "Selector", "SelectorError"]
