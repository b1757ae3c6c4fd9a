"""Fakes of ``tensorrt`` (per version surface) and of the CUDA backend, shared by the tests/test_trt_*.py files.

On CPU the TensorRT builder and runtime run against a small fake ``tensorrt`` module and a fake CUDA
backend (host memory): that checks our control flow (profile, flags, DLA, timing cache, refit of
stripped engines, the shared scratch, run) but not TensorRT itself. A fake models API surface and
call order only: nothing it computes is a TensorRT result. Not a test module (no ``test_`` prefix).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
import threading
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import snnet_export.runtime.trt as trt_pkg
import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export import deps
from snnet_export.engine_folder.engine_records import parse_version

# ---- fakes ---------------------------------------------------------------------------------------


class FakeBackend:
    """A CudaBackend over host memory; 'device pointers' index a dict of byte arrays."""

    name = "fake"

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self.next = 4096
        self.freed: list[int] = []
        self._local = threading.local()

    def alloc(self, nbytes):
        ptr, self.next = self.next, self.next + nbytes + 4096
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr):
        del self.mem[ptr]
        self.freed.append(ptr)

    def htod(self, dst, src, stream):
        self.mem[dst][: src.nbytes] = src.tobytes()

    def dtoh(self, dst, src, stream):
        dst[...] = np.frombuffer(bytes(self.mem[src][: dst.nbytes]), dst.dtype).reshape(dst.shape)

    def stream(self):
        return 7

    def destroy_stream(self, stream):
        pass

    def sync(self, stream):
        pass

    def device_info(self):
        return "FakeGPU", "8.7"

    @contextlib.contextmanager
    def current(self):
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth

    def is_current(self):
        return getattr(self._local, "depth", 0) > 0


def _load_gemm(onnx_path: str):
    """(W, B) of a test stitch, read through its external-data weight file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)  # loads external data from beside the file
    arrays = {t.name[0]: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    return arrays["W"], arrays["B"]


def _serialize(w, b) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=w if w is not None else np.zeros(0), b=b if b is not None else np.zeros(0))
    return b"FAKE" + buf.getvalue()


# ---- version surfaces ------------------------------------------------------------------------------
# Which of the names our builder/runtime touch exist in each TensorRT's Python bindings. The fake
# below has them all and hides, per version, what that version lacks (reading it raises
# AttributeError, as the real bindings do). Sources:
#  * 10.13: the tensorrt-stubs 10.13.0.35 (.venv/trt-stubs; test_surface_10_13_matches_the_stubs checks it);
#  * 10.0:  TensorRT 10.1 release notes / migration guide: the V2 device-memory APIs
#           (ICudaEngine.device_memory_size_v2, IExecutionContext.set_device_memory) arrived in 10.1;
#           10.0 has only the device_memory property and device_memory_size;
#  * 10.3:  as 10.13 except HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY (not in 10.3's
#           bindings as far as we could establish: builds asking for it are refused there);
#  * 11.x:  TensorRT 11 migration guide, "Removed Python APIs": BuilderFlag.FP16 (strong typing
#           only), ICudaEngine.device_memory_size; weak-typing-era creation flags are gone (we assume
#           EXPLICIT_BATCH and STRONGLY_TYPED too, so our code must not need them) and, deprecated since
#           10.0, create_execution_context_without_device_memory and the V1 device_memory property.
# A fake models API surface and call order only: nothing it computes is a TensorRT result.
MISSING = {
    "10.0": {"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "Engine.device_memory_size_v2",
             "Context.set_device_memory"},
    "10.3": {"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"},
    "10.13": set(),
    "11": {"BuilderFlag.FP16", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
           "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "Engine.device_memory_size",
           "Engine.create_execution_context_without_device_memory", "Context.device_memory"},
}
VERSIONS = {"10.0": "10.0.1.6", "10.3": "10.3.0.30", "10.13": "10.13.0.35", "11": "11.1.0.106"}


def _surface(version: str) -> str:
    v = parse_version(version)
    return "11" if v[0] >= 11 else "10.13" if v >= (10, 13) else "10.3" if v >= (10, 1) else "10.0"


class _Absent:
    """A class attribute this TensorRT version lacks: reading it raises AttributeError (hasattr False)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        raise AttributeError(f"fake tensorrt: this version has no {self.name}")

    def __set__(self, obj, value):
        raise AttributeError(f"fake tensorrt: this version has no {self.name}")


def _enum(name: str, members: list[str], missing: set[str]) -> SimpleNamespace:
    return SimpleNamespace(**{m: i for i, m in enumerate(members) if f"{name}.{m}" not in missing})


def _hide(cls, missing: set[str]):
    """A subclass of ``cls`` without the members ``missing`` names for it."""
    absent = {m.split(".", 1)[1]: _Absent() for m in missing if m.split(".", 1)[0] == cls.__name__}
    for attr_name, desc in absent.items():
        desc.name = attr_name
    return type(cls.__name__, (cls,), absent) if absent else cls


def make_fake_trt(version: str = "10.3.0.30", backend: FakeBackend | None = None) -> types.ModuleType:
    """A fake ``tensorrt`` module with the API surface of ``version`` (see MISSING)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # type: ignore[attr-defined]
    missing = MISSING[_surface(version)]
    trt.BuilderFlag = _enum("BuilderFlag", ["FP16", "STRIP_PLAN", "REFIT_IDENTICAL", "GPU_FALLBACK",
                                            "VERSION_COMPATIBLE"], missing)
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
                                              missing)
    flag_names = {v: k for k, v in vars(trt.BuilderFlag).items()}
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")
    trt.HardwareCompatibilityLevel = SimpleNamespace(**{
        k: v for k, v in {"NONE": "none", "AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "same-cc"}.items()
        if f"HardwareCompatibilityLevel.{k}" not in missing})
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = SimpleNamespace(STATIC=0, ON_PROFILE_CHANGE=1, USER_MANAGED=2)
    trt.Dims = lambda shape: tuple(shape)
    trt.nptype = lambda dtype: np.float32

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Network:
        def __init__(self):
            self.w = self.b = None
            self.num_inputs = 1

        def get_input(self, i):
            return SimpleNamespace(name="input")

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            self.network.w, self.network.b = _load_gemm(path)
            return True

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):  # grows by one byte per save, so the test can count saves
            self.blob += b"+"
            return memoryview(self.blob)

    class Config:
        def __init__(self):
            self.flags, self.pools, self.profiles, self.cache = [], {}, [], None
            self.default_device_type = self.DLA_core = self.hardware_compatibility_level = None

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.append(flag_names[flag])

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, blob):
            return Cache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return cache.blob != b"mismatch"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            trt.calls.append(("logger", logger))
            self.num_DLA_cores = 2
            self.configs = []

        def create_network(self, flags):
            trt.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            self.configs.append(Config())
            return self.configs[-1]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.calls.append(("build", config))
            if "STRIP_PLAN" in config.flags:
                return memoryview(_serialize(None, None))
            return memoryview(_serialize(network.w, network.b))

    def _on_device(what):
        """Real TensorRT needs the CUDA context current on the calling thread: so does the fake."""
        if backend is not None and not backend.is_current():
            raise RuntimeError(f"fake tensorrt: {what} called without a current CUDA context on this thread")

    class Engine:
        def __init__(self, w, b):
            self.w, self.b = w, b
            self.num_io_tensors, self.refittable = 2, True

        device_memory_size = property(lambda self: 1000)
        device_memory_size_v2 = property(lambda self: 1000)

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "input" else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4)]

        def create_execution_context(self, strategy=0):
            assert strategy == trt.ExecutionContextAllocationStrategy.USER_MANAGED
            return ContextV(self)

        def create_execution_context_without_device_memory(self):
            return ContextV(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.shape, self.devmem = engine, {}, None, None

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return 1 <= shape[0] <= 16

        def get_tensor_shape(self, name):
            return (self.shape[0], 10)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def set_device_memory(self, ptr, size):
            self.devmem = (ptr, size)

        def _set_v1(self, ptr):
            self.devmem = (ptr, None)

        device_memory = property(lambda self: self.devmem[0], _set_v1)

        def execute_async_v3(self, stream):
            _on_device("execute_async_v3")
            assert self.devmem is not None and (self.devmem[1] is None or self.devmem[1] >= 1000)
            assert self.engine.w is not None and self.engine.w.size, "stripped engine was not refitted"
            n = int(np.prod(self.shape))
            x = np.frombuffer(bytes(backend.mem[self.addr["input"]][: n * 4]), np.float32).reshape(self.shape)
            y = (x.reshape(len(x), -1) @ self.engine.w + self.engine.b).astype(np.float32)
            backend.mem[self.addr["logits"]][: y.nbytes] = y.tobytes()
            return True

    class Runtime:
        def __init__(self, logger):
            trt.calls.append(("logger", logger))
            self.engine_host_code_allowed = False
            self._dla = None

        def _set_dla(self, core):
            trt.calls.append(("runtime.DLA_core", core))
            self._dla = core

        DLA_core = property(lambda self: self._dla, _set_dla)

        def deserialize_cuda_engine(self, data):
            _on_device("deserialize_cuda_engine")
            trt.calls.append(("deserialize", self._dla))
            if not data.startswith(b"FAKE"):
                return None
            z = np.load(io.BytesIO(data[4:]))
            w, b = z["w"], z["b"]
            return EngineV(w if w.size else None, b if b.size else None)

    class Refitter:
        def __init__(self, engine, logger):
            trt.calls.append(("logger", logger))
            self.engine, self.pending = engine, None

        def refit_cuda_engine(self):
            _on_device("refit_cuda_engine")
            self.engine.w, self.engine.b = self.pending
            return True

        def get_missing_weights(self):
            return []

    class OnnxParserRefitter:
        def __init__(self, refitter, logger):
            self.refitter, self.num_errors = refitter, 0

        def refit_from_file(self, path):
            trt.calls.append(("refit", Path(path).name))
            self.refitter.pending = _load_gemm(path)
            return True

    EngineV, ContextV = _hide(Engine, missing), _hide(Context, missing)
    for cls in (ILogger, OnnxParser, Builder, Runtime, Refitter, OnnxParserRefitter):
        setattr(trt, cls.__name__, cls)
    return trt


def install_fake(monkeypatch, version: str = VERSIONS["10.3"]) -> SimpleNamespace:
    """Put a fake ``tensorrt`` of ``version`` and a host-memory CUDA backend in place of the real ones."""
    if deps.is_tensorrt_available():
        pytest.skip("the real TensorRT is installed: the fake would shadow it")
    backend = FakeBackend()
    trt = make_fake_trt(version, backend=backend)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    # the modules as imported now (another test file may have re-imported the package)
    for module in (trt_cuda.__name__, "snnet_export.runtime.trt.runner"):  # runner imported it by name
        monkeypatch.setattr(importlib.import_module(module), "get_backend", lambda name=None, device=0: backend)
    monkeypatch.setattr(importlib.import_module(trt_pkg.__name__), "_LOGGER", None)  # the process's one logger
    return SimpleNamespace(trt=trt, backend=backend)


def called(trt, name: str) -> list:
    """The arguments of every recorded fake-TensorRT call ``name``, in order."""
    return [c[1] for c in trt.calls if c[0] == name]
