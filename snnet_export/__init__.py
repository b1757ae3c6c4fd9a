"""snnet-export: a deployment compiler for Stitchable Neural Networks (SN-Net).

Importing the package is cheap: torch, onnx, onnxruntime and TensorRT are imported only by the
modules that need them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import SNNetExportError  # noqa: E402

__all__ = ["SNNetExportError", "__version__"]
