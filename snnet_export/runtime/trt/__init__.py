"""TensorRT backend of the runtime (the builder is :mod:`snnet_export.build.trt_builder`), imported lazily.

* :mod:`.runner` loads engines (refitting weight-stripped ones), shares one activation buffer
  between resident engines and runs them: :class:`~.runner.TrtEngine`, :class:`~.runner.SharedScratch`.
* :mod:`.cuda` hides cuda-python / pycuda behind one small interface.

Importing this package or its modules does not import TensorRT; the functions that need it do, after
:func:`snnet_export.deps.require` has checked that it is installed.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

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


def make_logger(name: str = "tensorrt") -> trt.ILogger:
    """A ``trt.ILogger`` that forwards TensorRT's messages to :mod:`logging` (VERBOSE -> DEBUG)."""
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
