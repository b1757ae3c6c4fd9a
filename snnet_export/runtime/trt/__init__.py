"""TensorRT backend of the runtime (the builder is :mod:`snnet_export.engine_build.trt_builder`), imported lazily.

* :mod:`.runner` loads engines (refitting weight-stripped ones), shares one activation buffer
  between resident engines and runs them: :class:`~.runner.TrtEngine`, :class:`~.runner.SharedScratch`.
* :mod:`.cuda` hides cuda-python / pycuda behind one small interface.

Importing this package or its modules does not import TensorRT; the functions that need it do, after
:func:`snnet_export.deps.require` has checked that it is installed.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import tensorrt as trt

    from ...engine_folder.engine_records import GpuEnv
    from .cuda import CudaBackend


def tensorrt_version() -> str:
    """The installed TensorRT's version; raises MissingDependencyError if it is not installed."""
    from ...deps import require

    return str(require("tensorrt", "Reading the TensorRT version").__version__)


def gpu_environment(backend: CudaBackend | None = None) -> GpuEnv:
    """This machine's TensorRT version and GPU (name, compute capability), as engine records store them."""
    from ...engine_folder.engine_records import GpuEnv
    from .cuda import get_backend

    version = tensorrt_version()
    name, cc = (backend or get_backend()).device_info()
    return GpuEnv(tensorrt_version=version, gpu_name=name, compute_capability=cc)


_LOGGER: trt.ILogger | None = None


def make_logger(name: str = "tensorrt") -> trt.ILogger:
    """The process's one ``trt.ILogger``, forwarding TensorRT's messages to :mod:`logging` (VERBOSE -> DEBUG).

    TensorRT keeps a single logger per process: the first builder, runtime or refitter registers it
    and later ones given another logger only warn that theirs is ignored. So every builder, runtime
    and refitter here gets the same instance, created on first use.
    """
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _new_logger(name)
    return _LOGGER


def _new_logger(name: str) -> trt.ILogger:
    import tensorrt as trt

    target = logging.getLogger(name)
    sev = trt.ILogger.Severity
    levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR, sev.WARNING: logging.WARNING,
              sev.INFO: logging.DEBUG, sev.VERBOSE: logging.DEBUG}

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if target.isEnabledFor(level):
                target.log(level, "%s", msg)

    return _Logger()


def this_gpu_device(backend: CudaBackend | None = None) -> str:
    """The device id TensorRT profiles of this GPU are saved and looked up under (``gpu-<GPU name>``).

    ``bench --backend trt`` saves under it and the selector looks it up with it: one function, so
    the selector finds the profile measured on this GPU, not another GPU's.
    """
    from ...engine_folder.profile import device_name
    from .cuda import get_backend

    name, _ = (backend or get_backend()).device_info()
    return device_name("trt", name)


def usable_trt_target(manifest: Mapping[str, Any], target: str | None = None) -> tuple[str | None, str]:
    """``(target, "")`` when this machine can run the folder's engines for ``target``, else ``(None, why)``.

    ``target`` None tries every target with engines (sorted by name) and takes the first usable one.
    Checks that TensorRT imports, that CUDA opens a GPU, that engines were built for the target, and
    that each record matches this machine's TensorRT and GPU and the folder's current weights.
    """
    from ...deps import is_tensorrt_available
    from ...engine_folder.engine_records import incompatibility, stale_weights, target_records

    built = sorted(manifest.get("engines") or {})
    names = [target] if target is not None else built
    if not built or not names:
        return None, "the folder has no TensorRT engines (run `snnet-export build`)"
    if not is_tensorrt_available():
        return None, "TensorRT is not installed (pip install 'snnet-export[trt]', or JetPack on a Jetson)"
    try:
        env = gpu_environment()
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU, no cuda-python: all mean "no TRT here"
        return None, f"no usable CUDA GPU ({exc})"
    weights = (manifest.get("weights") or {}).get("sha256")
    reasons = []
    for name in names:
        records = target_records(manifest, name)
        why = "no engines were built for it" if not records else next(
            (f"stitch {r.cfg_id}'s engine: {w}" for r in records
             if (w := incompatibility(r, env) or ("it was built from other weights" if stale_weights(r, weights)
                                                 else None))), None)
        if why is None:
            return name, ""
        reasons.append(f"target {name}: {why}")
    return None, "; ".join(reasons)
