"""The TensorRT builder and runtime modules.

On CPU they run against a small fake ``tensorrt`` module and a fake CUDA backend (host memory): that
checks our control flow (profile, flags, DLA, timing cache, refit of stripped engines, the shared
scratch, run) but not TensorRT itself. The tests marked ``tensorrt``/``gpu`` build real engines from
a small ONNX and compare them with onnxruntime; they are skipped without TensorRT and a GPU.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import sys
import threading
import warnings
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from engine_folder import make_engine_folder, onnxruntime_logits

import snnet_export.runtime.trt as trt_pkg
import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export import deps
from snnet_export.engine_build import build_engines
from snnet_export.engine_folder.engine_records import find_record, parse_version
from snnet_export.errors import BuildError
from snnet_export.engine_folder.manifest import load_manifest

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


@pytest.fixture()
def fake(monkeypatch):
    return install_fake(monkeypatch)


def called(trt, name: str) -> list:
    """The arguments of every recorded fake-TensorRT call ``name``, in order."""
    return [c[1] for c in trt.calls if c[0] == name]


# ---- CPU tests against the fakes ---------------------------------------------------------------

@pytest.mark.parametrize("surface, precision, builder_flags, network_flags", [
    ("10.0", "fp32", ["FP16"], 1),            # weakly typed + FP16; EXPLICIT_BATCH (bit 0) still in the enum
    ("10.3", "fp32", ["FP16"], 1),
    ("10.13", "fp16", [], 1 | 2),             # FP16 export: STRONGLY_TYPED (bit 1), no FP16 builder flag
    ("11", "fp16", [], 0),                    # always strongly typed; neither creation flag exists
])
@pytest.mark.parametrize("strip", [False, True])
def test_build_then_run_on_every_version_surface(tmp_path, monkeypatch, surface, precision, builder_flags,
                                                 network_flags, strip):
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    fake = install_fake(monkeypatch, VERSIONS[surface])
    folder = make_engine_folder(tmp_path / "f", precision=precision)
    result = build_engines(folder, "dgpu", strip_weights=strip, progress=False)
    assert len(result.built) == 3
    config = called(fake.trt, "build")[0]
    assert called(fake.trt, "create_network") == [network_flags] * 3
    assert config.flags == builder_flags + (["STRIP_PLAN", "REFIT_IDENTICAL"] if strip else [])
    assert config.pools == {"WORKSPACE": 4096 << 20} and config.builder_optimization_level == 3
    assert config.profiles[0].shapes == ("input", (1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4))
    assert (folder / "trt" / "dgpu" / "timing.cache").read_bytes() == b"+++"  # one cache, saved per stitch
    assert len({id(c.cache) for c in called(fake.trt, "build")}) == 1

    x = np.random.default_rng(1).standard_normal((5, 3, 4, 4)).astype(np.float32)
    scratch = SharedScratch(fake.backend)
    engines = load_engines(folder, "dgpu", scratch=scratch)
    assert called(fake.trt, "refit") == ([f"stitch_{i:03d}.onnx" for i in range(3)] if strip else [])
    assert len({id(logger) for logger in called(fake.trt, "logger")}) == 1  # one ILogger per process
    for cfg_id, engine in engines.items():
        np.testing.assert_allclose(engine.run(x), onnxruntime_logits(folder / f"stitch_{cfg_id:03d}.onnx", x),
                                   rtol=2e-3 if precision == "fp16" else 1e-5, atol=2e-3 if precision == "fp16" else 1e-5)
    assert scratch.size("activations") == 1024  # 1000 rounded up to 256 bytes, shared by all three
    assert scratch.size("input") == 16 * 48 * 4 and scratch.size("output") == 768  # 640 rounded up
    with pytest.raises(ValueError, match=r"batch 1..16, got shape \[17, 3, 4, 4\]"):
        engines[0].run(np.zeros((17, 3, 4, 4), np.float32))
    scratch.close()
    assert fake.backend.mem == {}


def test_engines_run_from_other_threads(tmp_path, fake):
    """Engines loaded on this thread run from 8 others: each run makes the device current on its thread."""
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    x = np.random.default_rng(2).standard_normal((3, 3, 4, 4)).astype(np.float32)
    with SharedScratch(fake.backend) as scratch:
        engines = load_engines(folder, "dgpu", scratch=scratch)
        want = {i: e.run(x) for i, e in engines.items()}
        assert not fake.backend.is_current()  # nothing left current on the loading thread
        results: dict[int, list] = {}

        def worker(n: int) -> None:
            results[n] = [np.array_equal(engines[k].run(x), want[k]) for k in (n % 3, (n + 1) % 3)]

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == list(range(8)) and all(all(r) for r in results.values())


def test_tensorrt11_refuses_fp32_exports_before_building(tmp_path, monkeypatch):
    fake = install_fake(monkeypatch, VERSIONS["11"])
    with pytest.raises(BuildError, match="--precision fp16"):
        build_engines(make_engine_folder(tmp_path / "f32", ids=(0,)), "dgpu")
    assert called(fake.trt, "build") == []


def test_dla_and_compatibility_settings(tmp_path, fake):
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    prof = tmp_path / "orin-dla.yaml"
    prof.write_text("platform: jetson\nmin_tensorrt: '10.3'\nbatch: {min: 2, opt: 2, max: 2}\n"
                    "dla: {core: 1, gpu_fallback: true}\nworkspace_mib: null\nversion_compatible: true\n")
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    build_engines(folder, prof, progress=False)
    config = called(fake.trt, "build")[0]
    assert (config.default_device_type, config.DLA_core) == ("DLA", 1)
    assert config.flags == ["FP16", "GPU_FALLBACK", "VERSION_COMPATIBLE"] and config.pools == {}
    with SharedScratch(fake.backend) as scratch:
        load_engines(folder, "orin-dla", scratch=scratch)
    # the runtime is told the engine's DLA core before it deserializes (else DLA layers load on core 0)
    assert [c for c in fake.trt.calls if c[0] in ("runtime.DLA_core", "deserialize")] == [
        ("runtime.DLA_core", 1), ("deserialize", 1)]
    prof.write_text(prof.read_text().replace("core: 1", "core: 2"))
    with pytest.raises(BuildError, match="asks for DLA core 2 but this device has 2 DLA core"):
        build_engines(folder, prof, force=True)
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware_compatibility: same-compute-capability\n")
    with pytest.raises(BuildError, match="no same-compute-capability hardware compatibility"):
        build_engines(folder, hw)


def test_same_compute_capability_needs_a_tensorrt_that_has_it(tmp_path, monkeypatch):
    fake = install_fake(monkeypatch, VERSIONS["10.13"])
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware_compatibility: same-compute-capability\n")
    build_engines(make_engine_folder(tmp_path / "f", ids=(0,)), hw, progress=False)
    assert called(fake.trt, "build")[0].hardware_compatibility_level == "same-cc"


def test_more_dla_engines_than_a_core_holds_are_refused(tmp_path, fake):
    from snnet_export.runtime.trt.runner import DLA_LOADABLES_PER_CORE, SharedScratch, load_engines

    prof = tmp_path / "dla.yaml"
    prof.write_text("platform: jetson\nbatch: {min: 2, opt: 2, max: 2}\ndla: {core: 0, gpu_fallback: true}\n")
    folder = make_engine_folder(tmp_path / "f", ids=tuple(range(DLA_LOADABLES_PER_CORE + 1)))
    build_engines(folder, prof, progress=False)
    with SharedScratch(fake.backend) as scratch:
        with pytest.raises(BuildError, match="17 engines of target dla run on DLA core 0, but a DLA core holds "
                                             "at most 16 loadables"):
            load_engines(folder, "dla", scratch=scratch)
        assert called(fake.trt, "deserialize") == []  # refused before loading any
        assert len(load_engines(folder, "dla", ids=list(range(16)), scratch=scratch)) == 16


def test_bad_timing_cache_is_replaced(tmp_path, fake):
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"mismatch")
    build_engines(folder, "dgpu", timing_cache=cache, progress=False)
    assert cache.read_bytes() == b"+"


def test_runtime_refuses_mismatched_or_changed_engines(tmp_path, fake):
    from snnet_export.runtime.trt.runner import SharedScratch, TrtEngine, load_engines

    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    build_engines(folder, "dgpu", progress=False)
    rec = find_record(load_manifest(folder), "dgpu", 0)
    scratch = SharedScratch(fake.backend)
    path = folder / rec.file
    TrtEngine(path, record=rec.to_dict(), scratch=scratch)  # a dict record is accepted too
    with pytest.raises(BuildError, match="built by TensorRT 10.13.0.35 but this machine has TensorRT 10.3.0.30"):
        TrtEngine(path, record=replace(rec, tensorrt_version="10.13.0.35"), scratch=scratch)
    with pytest.raises(BuildError, match=r"built for compute capability 9.0 \(H100\)"):
        TrtEngine(path, record=replace(rec, gpu_name="H100", compute_capability="9.0"), scratch=scratch)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = "f" * 64  # a re-export with other weights
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match=r"engines \[0\] .* built from other weights"):
        load_engines(folder, "dgpu", scratch=scratch)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(BuildError, match="does not match its manifest record"):
        TrtEngine(path, record=rec, scratch=scratch)
    path.write_bytes(b"not an engine")
    with pytest.raises(BuildError, match="could not deserialize"):
        TrtEngine(path, scratch=scratch)


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


# ---- real TensorRT on a GPU ----------------------------------------------------------------------

def _gpu_available() -> bool:
    if not deps.is_tensorrt_available():
        return False
    try:
        trt_cuda.get_backend()
        return True
    except Exception:  # noqa: BLE001
        return False


requires_trt_gpu = pytest.mark.skipif(not _gpu_available(), reason="needs NVIDIA TensorRT, a CUDA GPU and cuda-python")


@pytest.mark.tensorrt
@pytest.mark.gpu
@requires_trt_gpu
@pytest.mark.parametrize("strip", [False, True])
def test_real_engines_match_onnxruntime(tmp_path, strip):
    from snnet_export.runtime.trt import tensorrt_version
    from snnet_export.runtime.trt.runner import SharedScratch, TrtEngine, load_engines

    precision = "fp16" if parse_version(tensorrt_version())[0] >= 11 else "fp32"
    folder = make_engine_folder(tmp_path / "real", precision=precision)
    result = build_engines(folder, "dgpu", strip_weights=strip, progress=False)
    assert len(result.built) == 3 and (folder / "trt" / "dgpu" / "timing.cache").is_file()
    assert build_engines(folder, "dgpu", strip_weights=strip).skipped == (0, 1, 2)
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    with SharedScratch() as scratch:
        engines = load_engines(folder, "dgpu", scratch=scratch)
        for cfg_id, engine in engines.items():
            ref = onnxruntime_logits(folder / f"stitch_{cfg_id:03d}.onnx", x)
            np.testing.assert_allclose(engine.run(x), ref, atol=2e-2, rtol=2e-2)
            assert engine.run(x[:1]).shape == (1, 10)
        assert scratch.size("activations") >= max(e.activation_bytes for e in engines.values())
        rec = find_record(load_manifest(folder), "dgpu", 0)
        with pytest.raises(BuildError, match="built by TensorRT 0.0.1"):
            TrtEngine(folder / rec.file, record=replace(rec, tensorrt_version="0.0.1"), scratch=scratch)


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


# ---- the 10.13 surface is the real bindings' (from the installed stubs) -----------------------

# Every TensorRT name our builder and runtime touch, as "Class.member" of the real bindings.
USED = {
    "BuilderFlag": ["FP16", "STRIP_PLAN", "REFIT_IDENTICAL", "GPU_FALLBACK", "VERSION_COMPATIBLE"],
    "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
    "HardwareCompatibilityLevel": ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"],
    "ExecutionContextAllocationStrategy": ["USER_MANAGED"],
    "Builder": ["create_network", "create_builder_config", "create_optimization_profile",
                "build_serialized_network", "num_DLA_cores"],
    "IBuilderConfig": ["set_flag", "set_memory_pool_limit", "builder_optimization_level", "default_device_type",
                       "DLA_core", "hardware_compatibility_level", "create_timing_cache", "set_timing_cache",
                       "add_optimization_profile"],
    "ICudaEngine": ["device_memory_size", "device_memory_size_v2", "create_execution_context",
                    "create_execution_context_without_device_memory", "refittable", "num_io_tensors",
                    "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_profile_shape"],
    "IExecutionContext": ["set_device_memory", "device_memory", "execute_async_v3", "set_input_shape",
                          "set_tensor_address", "get_tensor_shape"],
    "Runtime": ["DLA_core", "engine_host_code_allowed", "deserialize_cuda_engine"],
    "Refitter": ["refit_cuda_engine", "get_missing_weights"],
    "OnnxParser": ["parse_from_file", "num_errors", "get_error"],
    "OnnxParserRefitter": ["refit_from_file", "num_errors", "get_error"],
}
FAKE_CLASS = {"ICudaEngine": "Engine", "IExecutionContext": "Context"}  # how MISSING names them


def _stub_members() -> dict[str, set[str]]:
    import ast

    path = Path(sys.prefix) / "trt-stubs" / "tensorrt_bindings" / "tensorrt.pyi"
    if not path.is_file():
        pytest.skip(f"no TensorRT stubs at {path} (make install puts them there)")
    members: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
            doc = ast.get_docstring(node) or ""  # write-only properties appear only as ":ivar name:"
            names.update(re.findall(r":ivar (\w+):", doc))
            members[node.name] = names
    return members


def test_surface_10_13_matches_the_stubs():
    """Everything our code touches exists in the 10.13 bindings, and the 10.13 fake hides nothing."""
    members = _stub_members()
    absent = [f"{cls}.{m}" for cls, names in USED.items() for m in names if m not in members.get(cls, set())]
    assert absent == []
    assert MISSING["10.13"] == set()


def test_older_and_newer_surfaces_only_hide_names_we_use():
    """Each version's MISSING names a member our code touches (a typo would hide nothing)."""
    used = {f"{FAKE_CLASS.get(cls, cls)}.{m}" for cls, names in USED.items() for m in names}
    for surface, names in MISSING.items():
        assert names <= used, (surface, names - used)


# ---- selector + bench: this GPU's profile, and auto's fallback --------------------------------

def _trt_profile(folder, device: str, speed: float) -> None:
    from snnet_export.engine_folder.profile import PROFILE_SCHEMA, profile_path

    stitches = [{"id": i, "batch": 1, "throughput": speed * (i + 1), "runs": 3,
                 "latency_ms": {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}} for i in range(3)]
    prof = {"schema": PROFILE_SCHEMA, "version": 1, "device": device, "backend": "trt", "precision": "fp32",
            "target": "dgpu", "environment": {}, "batches": [1], "stitches": stitches}
    profile_path(folder, device, "trt").write_text(json.dumps(prof))


def test_selector_uses_the_trt_profile_bench_saved_for_this_gpu(tmp_path, fake):
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.runtime import Selector

    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    measured = profile_from_engines(folder, backend="trt", batches=[1], warmup=0, runs=1, min_seconds=0.0,
                                    progress=False)
    assert measured["device"] == "gpu-fakegpu" and (folder / "profile.gpu-fakegpu.trt.json").is_file()
    _trt_profile(folder, "gpu-nvidia-h100-80gb-hbm3", 1000.0)  # another GPU's, and newer
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*profile measured")  # this GPU's is found: no warning
        sel = Selector(folder, backend="trt", resident="none")
    assert sel.profile["device"] == "gpu-fakegpu" and sel.profile["stitches"] == measured["stitches"]


@pytest.mark.parametrize("case, why", [
    ("other tensorrt", "built by TensorRT 10.3.0.30 but this machine has TensorRT 10.13.0.35"),
    ("other gpu", "built for compute capability 9.0 (H100)"),
    ("no gpu", "no usable CUDA GPU (CUDA call cudaSetDevice(0) failed"),
    ("other target", "target jetson-orin: no engines were built for it"),
])
def test_auto_backend_falls_back_to_onnxruntime_and_says_why(tmp_path, monkeypatch, case, why):
    from snnet_export.engine_folder.manifest import save_manifest
    from snnet_export.engine_folder.profile import device_name
    from snnet_export.runtime import Selector

    fake = install_fake(monkeypatch, VERSIONS["10.3"])
    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    _trt_profile(folder, "gpu-fakegpu", 100.0)
    _trt_profile(folder, device_name("ort"), 10.0)  # an ORT profile for the fallback
    prof = json.loads((folder / f"profile.{device_name('ort')}.trt.json").read_text())
    (folder / f"profile.{device_name('ort')}.trt.json").unlink()
    (folder / f"profile.{device_name('ort')}.json").write_text(json.dumps({**prof, "backend": "ort"}))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend 'auto'")
        assert Selector(folder, resident="none").backend == "trt"  # this machine can run them
    target = None
    if case == "other tensorrt":
        fake.trt.__version__ = "10.13.0.35"
    elif case == "other gpu":
        manifest = load_manifest(folder)
        for rec in manifest["engines"]["dgpu"]["stitches"]:
            rec["gpu"] = {"name": "H100", "compute_capability": "9.0"}
        save_manifest(folder, manifest)
    elif case == "no gpu":
        def no_gpu(name=None, device=0):
            raise BuildError("CUDA call cudaSetDevice(0) failed: cudaErrorNoDevice")
        for module in (trt_cuda.__name__, "snnet_export.runtime.trt.runner"):
            monkeypatch.setattr(importlib.import_module(module), "get_backend", no_gpu)
    else:
        target = "jetson-orin"
    with pytest.warns(UserWarning, match="using ONNX Runtime, not the folder's TensorRT engines") as rec:
        sel = Selector(folder, resident="none", target=target)
    assert sel.backend == "ort" and any(why in str(w.message) for w in rec)
