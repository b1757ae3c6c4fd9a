"""One place that knows which optional dependencies are installed.

Nothing here imports a heavy package at module import time.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

_EXTRA_FOR = {
    "onnxruntime": "ort",
    "onnx": "ort",
    "tensorrt": "trt",
    "matplotlib": "report",
}


def _spec_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def is_onnxruntime_available() -> bool:
    """True when ``onnxruntime`` can be imported."""
    return _spec_exists("onnxruntime")


def is_tensorrt_available() -> bool:
    """True when the real TensorRT Python package is importable.

    ``tensorrt-stubs`` installs an empty ``tensorrt`` namespace package, so the check imports it
    and looks for a real attribute (``tensorrt.Builder``) instead of trusting ``find_spec``.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return hasattr(trt, "Builder") and hasattr(trt, "Runtime")


def require(name: str, purpose: str) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming the extra to install."""
    if name == "tensorrt" and not is_tensorrt_available():
        raise MissingDependencyError(
            f"{purpose} needs NVIDIA TensorRT (10.x or 11.x), which is not installed here. "
            "On a Jetson it comes with JetPack (python3-libnvinfer); on a desktop GPU run "
            "`pip install 'snnet-export[trt]'` (or `pip install tensorrt`)."
        )
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(name.split(".")[0])
        hint = f"pip install 'snnet-export[{extra}]'" if extra else f"pip install {name}"
        raise MissingDependencyError(f"{purpose} needs `{name}` ({exc}); install it with `{hint}`.") from exc
