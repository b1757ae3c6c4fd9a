"""Everything that imports NVIDIA TensorRT, imported lazily.

* :mod:`.builder` builds one serialized engine from one stitch ONNX file (TensorRT 10.x and 11.x).
* :mod:`.runtime` loads engines (refitting weight-stripped ones), shares one activation buffer
  between resident engines and runs them: :class:`~.runtime.TrtEngine`, :class:`~.runtime.SharedScratch`.
* :mod:`.cuda` hides cuda-python / pycuda behind one small interface.

Importing this package or its modules does not import TensorRT; the functions that need it do, after
:func:`snnet_export.deps.require` has checked that it is installed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine_records import GpuEnv
    from .cuda import CudaBackend


def tensorrt_version() -> str:
    """The installed TensorRT's version; raises MissingDependencyError if it is not installed."""
    from ..deps import require

    return str(require("tensorrt", "Reading the TensorRT version").__version__)


def gpu_environment(backend: CudaBackend | None = None) -> GpuEnv:
    """This machine's TensorRT version and GPU (name, compute capability), as engine records store them."""
    from ..engine_records import GpuEnv
    from .cuda import get_backend

    version = tensorrt_version()
    name, cc = (backend or get_backend()).device_info()
    return GpuEnv(tensorrt_version=version, gpu_name=name, compute_capability=cc)
