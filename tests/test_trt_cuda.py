"""The CUDA backends of runtime.trt.cuda: the shared scratch, cuda-python error checks, pycuda contexts."""
from __future__ import annotations

import sys
import threading
import types

import pytest

import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export.errors import BuildError
from trt_fakes import FakeBackend


def test_shared_scratch_grows_and_frees():
    from snnet_export.runtime.trt.runner import SharedScratch

    backend = FakeBackend()
    with SharedScratch(backend) as s:
        s.reserve("activations", 100)
        first = s.ptr("activations")
        s.reserve("activations", 50)
        assert s.ptr("activations") == first and s.size("activations") == 256
        s.reserve("activations", 5000)
        assert backend.freed == [first] and s.size("activations") == 5120 and s.total_bytes == 5120
    assert backend.mem == {}


def test_cuda_python_errors_are_checked():
    pytest.importorskip("cuda.bindings.runtime")
    from cuda.bindings import runtime as rt

    if rt.cudaGetDeviceCount()[0] == rt.cudaError_t.cudaSuccess:
        pytest.skip("a CUDA device is present")
    with pytest.raises(BuildError, match=r"CUDA call cudaSetDevice\(0\) failed: cudaError"):
        trt_cuda.CudaPythonBackend()


# ---- pycuda backend: context push/pop and other threads ---------------------------------------

def make_fake_pycuda() -> types.ModuleType:
    """A fake ``pycuda.driver``: a per-thread context stack, and calls that need a current context.

    Models pycuda's rule that a driver call fails without a current context on the calling thread and
    that the process aborts at exit if a context is left on the stack (``stack_at_exit``).
    """
    drv = types.ModuleType("pycuda.driver")
    local = threading.local()
    drv.log = []

    class Error(Exception):
        pass

    def stack():
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    def need_context(what):
        if not stack():
            raise Error(f"{what} failed: invalid device context")

    class Context:
        def __init__(self):
            self.detached = False

        def push(self):
            stack().append(self)

        @staticmethod
        def pop():
            if not stack():
                raise Error("context stack is empty")
            stack().pop()

        def detach(self):
            self.detached = True
            drv.log.append("detach")

    class Device:
        def __init__(self, n):
            self.n = n

        def retain_primary_context(self):
            return Context()

        def name(self):
            return "FakeGPU"

        def compute_capability(self):
            return 8, 7

    class Mem(int):
        def free(self):
            need_context("free")
            drv.log.append("free")

    def mem_alloc(n):
        need_context("mem_alloc")
        drv.log.append("alloc")
        return Mem(4096 * drv.log.count("alloc"))

    drv.Error, drv.Context, drv.Device, drv.mem_alloc = Error, Context, Device, mem_alloc
    drv.init = lambda: None
    drv.stack = stack
    return drv


def test_pycuda_context_is_popped_and_works_from_other_threads(monkeypatch):
    drv = make_fake_pycuda()
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    registered = []
    monkeypatch.setattr(trt_cuda.atexit, "register", lambda fn, *args: registered.append((fn, args)))

    backend = trt_cuda.PyCudaBackend()
    assert drv.stack() == []  # not left pushed on the creating thread
    [(at_exit, (ref,))] = registered  # released at exit even if nobody calls close() ...
    assert ref() == backend.close  # ... through a weak reference: the backend can still be freed
    ptr = backend.alloc(100)
    assert drv.stack() == []
    errors = []

    def other_thread():
        try:
            backend.alloc(10)  # a driver call from a thread that never pushed a context
            with backend.current(), backend.current():  # nested: pushed once, popped once
                assert len(drv.stack()) == 1
            assert drv.stack() == []
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert errors == []
    backend.free(ptr)
    backend.close()
    at_exit(ref)  # what atexit will do: close() again, which is idempotent
    assert drv.stack() == [] and drv.log.count("detach") == 1
    assert drv.log.count("free") == 2  # one by free(), the other thread's by close()
    with pytest.raises(BuildError, match="pycuda backend was closed"):
        with backend.current():
            pass
