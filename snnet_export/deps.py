"""One place that knows which optional dependencies are installed.

Nothing here imports a heavy package at module import time.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

# The extra of setup.cfg that installs each optional package (the deploy side installs without any).
EXTRA_FOR = {
    "torch": "train",
    "torchvision": "train",
    "timm": "train",
    "sklearn": "train",
    "onnxscript": "train",
    "matplotlib": "plot",
    "plotly": "plot",
    "tensorrt": "trt",
    "cuda": "trt",
    "pytriton": "serve",
    "tritonclient": "serve",
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
        raise MissingDependencyError(f"{purpose} needs `{name}` ({exc}); install it with "
                                     f"`{install_hint(name)}`.") from exc


def install_hint(module: str) -> str:
    """The pip command that installs ``module`` (by the extra that carries it)."""
    extra = EXTRA_FOR.get(module.split(".")[0])
    return f"pip install 'snnet-export[{extra}]'" if extra else f"pip install {module.split('.')[0]}"


def missing_dependency(exc: ModuleNotFoundError, purpose: str) -> MissingDependencyError | None:
    """A :class:`MissingDependencyError` for an optional package ``exc`` failed to import, else None.

    The CLI's one error path calls this, so a command that needs an extra that is not installed
    (``snnet-export export`` on a deploy-only install) says which extra in one line.
    """
    root = (exc.name or "").split(".")[0]
    if root not in EXTRA_FOR:
        return None
    return MissingDependencyError(f"{purpose} needs `{root}`, which is not installed; install it with "
                                  f"`{install_hint(root)}`.")

