"""Device memory, copies and streams for the TensorRT runtime, behind one small interface.

Two implementations of :class:`CudaBackend`: :class:`CudaPythonBackend` (NVIDIA's ``cuda-python``,
``cuda.bindings.runtime``; the default) and :class:`PyCudaBackend` (``pycuda``). Both use the
CUDA runtime's primary context on one device, the same context TensorRT uses. Every CUDA call's
error code is checked and turned into a :class:`~snnet_export.errors.BuildError` that names the call.
The modules are imported only when a backend is created.

Threads: a CUDA context is current per thread. ``with backend.current():`` makes this backend's
device/context current on the calling thread for the TensorRT calls inside it (the runner wraps
deserialize, refit and every run in it), so engines loaded on one thread run from any other.
pycuda's context is pushed only inside ``current()`` (and each pycuda call) and popped on the way
out: the stack is empty whenever control is back with the caller, and :meth:`PyCudaBackend.close`
(also registered with :mod:`atexit`) releases the retained primary context, so pycuda never aborts
the process at exit with a non-empty context stack.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import threading
import weakref
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from ...errors import BuildError, MissingDependencyError

_INSTALL = "install cuda-python (`pip install 'snnet-export[trt]'` or `pip install cuda-python`) or pycuda"


class CudaBackend(Protocol):
    """What the runtime needs from CUDA. Pointers and stream handles are plain ints."""

    name: str

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def htod(self, dst: int, src: np.ndarray[Any, Any], stream: int) -> None: ...
    def dtoh(self, dst: np.ndarray[Any, Any], src: int, stream: int) -> None: ...
    def stream(self) -> int: ...
    def destroy_stream(self, stream: int) -> None: ...
    def sync(self, stream: int) -> None: ...
    def device_info(self) -> tuple[str, str]: ...
    def current(self) -> contextlib.AbstractContextManager[None]: ...


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(f"the TensorRT runtime needs CUDA bindings ({exc}); {_INSTALL}") from None
    return runtime


class CudaPythonBackend:
    """:class:`CudaBackend` on ``cuda-python``'s runtime API (``cudaMalloc``, ``cudaMemcpyAsync``...)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self.rt = _import_cudart()
        self.device = device
        self._check(self.rt.cudaSetDevice(device), f"cudaSetDevice({device})")

    def _check(self, result: Any, what: str) -> Any:
        """Unpack a cuda-python ``(err, *values)`` result; raise :class:`BuildError` unless success."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            msg = self.rt.cudaGetErrorString(err)
            text = msg[1].decode() if isinstance(msg, tuple) and isinstance(msg[1], bytes) else str(err)
            raise BuildError(f"CUDA call {what} failed: {getattr(err, 'name', err)} ({text}); is an NVIDIA GPU "
                             "with a working driver visible to this process (nvidia-smi)?")
        return values[0] if len(values) == 1 else tuple(values)

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Select this backend's device on the calling thread (the runtime API's per-thread state)."""
        self._check(self.rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")
        yield

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def htod(self, dst: int, src: np.ndarray[Any, Any], stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync(HtoD)")

    def dtoh(self, dst: np.ndarray[Any, Any], src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "cudaMemcpyAsync(DtoH)")

    def stream(self) -> int:
        return int(self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate"))

    def destroy_stream(self, stream: int) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def sync(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def device_info(self) -> tuple[str, str]:
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = prop.name.split(b"\0")[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name.strip(), f"{prop.major}.{prop.minor}"


class PyCudaBackend:
    """:class:`CudaBackend` on ``pycuda`` (retains the device's primary context, like TensorRT)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        try:
            import pycuda.driver as drv
        except ImportError as exc:
            raise MissingDependencyError(f"the pycuda backend needs pycuda ({exc}): `pip install pycuda`") from None
        self.drv = drv
        try:
            drv.init()
            self.dev = drv.Device(device)
            self.ctx: Any = self.dev.retain_primary_context()  # not pushed: see current()
        except drv.Error as exc:
            raise BuildError(f"pycuda could not open CUDA device {device}: {exc}") from None
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}
        self._local = threading.local()  # per-thread nesting depth of current()
        atexit.register(_close_at_exit, weakref.WeakMethod(self.close))  # weak: no backend kept alive

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Push the primary context on this thread (once, however deeply nested) and pop it after."""
        if self.ctx is None:
            raise BuildError("the pycuda backend was closed: create a new one")
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self.ctx.push()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self.drv.Context.pop()

    def close(self) -> None:
        """Free what is left and release the retained primary context (idempotent; runs at exit)."""
        if self.ctx is None:
            return
        with self.current():
            for mem in self._allocs.values():
                mem.free()
            self._allocs.clear()
            self._streams.clear()
        self.ctx.detach()
        self.ctx = None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            with self.current():
                return fn(*args)
        except self.drv.Error as exc:
            raise BuildError(f"CUDA call {what} failed (pycuda): {exc}") from None

    def alloc(self, nbytes: int) -> int:
        mem = self._call(f"mem_alloc({nbytes})", self.drv.mem_alloc, max(int(nbytes), 1))
        self._allocs[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        mem = self._allocs.pop(ptr, None)
        if mem is not None and self.ctx is not None:
            self._call("free", mem.free)

    def htod(self, dst: int, src: np.ndarray[Any, Any], stream: int) -> None:
        self._call("memcpy_htod_async", self.drv.memcpy_htod_async, dst, src, self._streams[stream])

    def dtoh(self, dst: np.ndarray[Any, Any], src: int, stream: int) -> None:
        self._call("memcpy_dtoh_async", self.drv.memcpy_dtoh_async, dst, src, self._streams[stream])

    def stream(self) -> int:
        s = self._call("Stream()", self.drv.Stream)
        self._streams[int(s.handle)] = s
        return int(s.handle)

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def sync(self, stream: int) -> None:
        self._call("Stream.synchronize", self._streams[stream].synchronize)

    def device_info(self) -> tuple[str, str]:
        major, minor = self.dev.compute_capability()
        return str(self.dev.name()), f"{major}.{minor}"


def _close_at_exit(close: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = close()
    if method is not None:
        method()


def get_backend(name: str | None = None, device: int = 0) -> CudaBackend:
    """``"cuda-python"``, ``"pycuda"``, or None for the first one installed (cuda-python first)."""
    if name in (None, "cuda-python"):
        if name is None and not _has("cuda.bindings") and not _has("cuda.cudart") and _has("pycuda"):
            return PyCudaBackend(device)
        return CudaPythonBackend(device)
    if name == "pycuda":
        return PyCudaBackend(device)
    raise BuildError(f"unknown CUDA backend {name!r}: expected 'cuda-python' or 'pycuda'")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
