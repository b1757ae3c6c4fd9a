"""Deployment-side runtime: imports NumPy and ONNX Runtime (or TensorRT) only, never torch/timm/click."""
