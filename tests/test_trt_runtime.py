"""The TensorRT builder and runtime modules.

On CPU they run against a small fake ``tensorrt`` module and a fake CUDA backend (host memory): that
checks our control flow (profile, flags, DLA, timing cache, refit of stripped engines, the shared
scratch, run) but not TensorRT itself. The tests marked ``tensorrt``/``gpu`` build real engines from
a small ONNX and compare them with onnxruntime; they are skipped without TensorRT and a GPU.
"""
from __future__ import annotations

import io
import json
import sys
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from engine_folder import make_engine_folder, onnxruntime_logits

import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export import deps
from snnet_export.build import build_engines
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


def make_fake_trt(version: str = "10.3.0.30", backend: FakeBackend | None = None) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # type: ignore[attr-defined]
    v11 = parse_version(version)[0] >= 11
    flags = ["STRIP_PLAN", "REFIT_IDENTICAL", "GPU_FALLBACK", "VERSION_COMPATIBLE"] + ([] if v11 else ["FP16"])
    trt.BuilderFlag = SimpleNamespace(**{f: f for f in flags})
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(**({} if v11 else {"EXPLICIT_BATCH": 0}))
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")
    trt.HardwareCompatibilityLevel = SimpleNamespace(NONE="none", AMPERE_PLUS="ampere+")
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = SimpleNamespace(USER_MANAGED="USER_MANAGED")
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
            self.flags.append(flag)

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

    class Engine:
        def __init__(self, w, b):
            self.w, self.b = w, b
            self.num_io_tensors, self.device_memory_size_v2, self.refittable = 2, 1000, True

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "input" else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4)]

        def create_execution_context(self, strategy):
            assert strategy == "USER_MANAGED"
            return Context(self)

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

        def execute_async_v3(self, stream):
            assert self.devmem is not None and self.devmem[1] >= self.engine.device_memory_size_v2
            assert self.engine.w is not None and self.engine.w.size, "stripped engine was not refitted"
            n = int(np.prod(self.shape))
            x = np.frombuffer(bytes(backend.mem[self.addr["input"]][: n * 4]), np.float32).reshape(self.shape)
            y = (x.reshape(len(x), -1) @ self.engine.w + self.engine.b).astype(np.float32)
            backend.mem[self.addr["logits"]][: y.nbytes] = y.tobytes()
            return True

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"FAKE"):
                return None
            z = np.load(io.BytesIO(data[4:]))
            w, b = z["w"], z["b"]
            return Engine(w if w.size else None, b if b.size else None)

    class Refitter:
        def __init__(self, engine, logger):
            self.engine, self.pending = engine, None

        def refit_cuda_engine(self):
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

    for cls in (ILogger, OnnxParser, Builder, Runtime, Refitter, OnnxParserRefitter):
        setattr(trt, cls.__name__, cls)
    return trt


@pytest.fixture()
def fake(monkeypatch):
    if deps.is_tensorrt_available():
        pytest.skip("the real TensorRT is installed: the fake would shadow it")
    backend = FakeBackend()
    trt = make_fake_trt(backend=backend)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_cuda, "get_backend", lambda name=None, device=0: backend)
    return SimpleNamespace(trt=trt, backend=backend)


# ---- CPU tests against the fakes ---------------------------------------------------------------

@pytest.mark.parametrize("strip", [False, True])
def test_build_then_run_matches_onnxruntime(tmp_path, fake, strip):
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    folder = make_engine_folder(tmp_path / "f")
    result = build_engines(folder, "dgpu", strip_weights=strip, progress=False)
    assert len(result.built) == 3
    config = fake.trt.calls[1][1]
    assert fake.trt.calls[0] == ("create_network", 1)  # EXPLICIT_BATCH still exists on 10.x
    assert config.flags == (["FP16", "STRIP_PLAN", "REFIT_IDENTICAL"] if strip else ["FP16"])
    assert config.pools == {"WORKSPACE": 4096 << 20} and config.builder_optimization_level == 3
    assert config.profiles[0].shapes == ("input", (1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4))
    assert (folder / "trt" / "dgpu" / "timing.cache").read_bytes() == b"+++"  # one cache, saved per stitch
    configs = [c for name, c in fake.trt.calls if name == "build"]
    assert len({id(c.cache) for c in configs}) == 1

    x = np.random.default_rng(1).standard_normal((5, 3, 4, 4)).astype(np.float32)
    scratch = SharedScratch(fake.backend)
    engines = load_engines(folder, "dgpu", scratch=scratch)
    assert [c for c in fake.trt.calls if c[0] == "refit"] == (
        [("refit", f"stitch_{i:03d}.onnx") for i in range(3)] if strip else [])
    for cfg_id, engine in engines.items():
        np.testing.assert_allclose(engine.run(x), onnxruntime_logits(folder / f"stitch_{cfg_id:03d}.onnx", x),
                                   rtol=1e-5, atol=1e-5)
    assert scratch.size("activations") == 1024  # 1000 rounded up to 256 bytes, shared by all three
    assert scratch.size("input") == 16 * 48 * 4 and scratch.size("output") == 768  # 640 rounded up
    with pytest.raises(ValueError, match=r"batch 1..16, got shape \[17, 3, 4, 4\]"):
        engines[0].run(np.zeros((17, 3, 4, 4), np.float32))
    scratch.close()
    assert fake.backend.mem == {}


def test_tensorrt11_network_flags_and_fp16(tmp_path, monkeypatch):
    if deps.is_tensorrt_available():
        pytest.skip("the real TensorRT is installed")
    trt = make_fake_trt("11.1.0", backend=FakeBackend())
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_cuda, "get_backend", lambda name=None, device=0: FakeBackend())
    folder = make_engine_folder(tmp_path / "f16", precision="fp16", ids=(0,))
    build_engines(folder, "dgpu", progress=False)
    assert trt.calls[0] == ("create_network", 0) and trt.calls[1][1].flags == []
    with pytest.raises(BuildError, match="--precision fp16"):
        build_engines(make_engine_folder(tmp_path / "f32", ids=(0,)), "dgpu")


def test_dla_and_compatibility_settings(tmp_path, fake):
    prof = tmp_path / "orin-dla.yaml"
    prof.write_text("platform: jetson\nmin_tensorrt: '10.3'\nbatch: {min: 2, opt: 2, max: 2}\n"
                    "dla: {core: 1, gpu_fallback: true}\nworkspace_mib: null\nversion_compatible: true\n")
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    build_engines(folder, prof, progress=False)
    config = fake.trt.calls[1][1]
    assert (config.default_device_type, config.DLA_core) == ("DLA", 1)
    assert config.flags == ["FP16", "GPU_FALLBACK", "VERSION_COMPATIBLE"] and config.pools == {}
    prof.write_text(prof.read_text().replace("core: 1", "core: 2"))
    with pytest.raises(BuildError, match="asks for DLA core 2 but this device has 2 DLA core"):
        build_engines(folder, prof, force=True)
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware_compatibility: same-compute-capability\n")
    with pytest.raises(BuildError, match="no same-compute-capability hardware compatibility"):
        build_engines(folder, hw)


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
