"""Load and run per-stitch TensorRT engines; several resident engines share one activation buffer.

    scratch = SharedScratch()                       # one stream + one activation buffer
    engines = {i: TrtEngine(folder / r.file, record=r, scratch=scratch) for i, r in ...}
    logits = engines[3].run(images)                 # images: float32 [batch, C, H, W]

Each engine's execution context is created with user-managed device memory; the scratch buffer is
sized to the largest engine's ``device_memory_size_v2`` and handed to every context with
``set_device_memory`` before each run. The input and output device buffers are shared the same way.
Only one stitch runs at a time (runs hold the scratch's lock and synchronise before returning).

A weight-stripped engine is refitted at load from its stitch ONNX, whose external data is the folder's
shared weight file. Before deserializing, an engine's manifest record is checked against this
machine's TensorRT version and GPU, and a mismatch is refused with the reason. This module imports
neither torch, timm nor click, and TensorRT only inside the functions that need it.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ...engine_folder.engine_records import EngineRecord, check_engine_compatible
from ...errors import BuildError, InferenceError
from ...fileio import sha256_file
from .cuda import CudaBackend, get_backend

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)
_ALIGN = 256  # set_device_memory needs 256-byte aligned memory; cudaMalloc gives more


class SharedScratch:
    """Device buffers shared by resident engines: activations, input and output, plus one stream.

    Buffers grow to the largest request and are re-handed to each context before every run, so engines
    may be added in any order. Growing frees the old buffer; it never happens during a run.
    """

    def __init__(self, backend: CudaBackend | None = None) -> None:
        self.backend = backend or get_backend()
        self.stream = self.backend.stream()
        self.lock = threading.RLock()
        self._ptr: dict[str, int] = {}
        self._size: dict[str, int] = {}

    def reserve(self, name: str, nbytes: int) -> None:
        """Make buffer ``name`` at least ``nbytes`` long (reallocating it if it is smaller)."""
        nbytes = -(-max(int(nbytes), 1) // _ALIGN) * _ALIGN
        with self.lock:
            if self._size.get(name, 0) >= nbytes:
                return
            if name in self._ptr:
                self.backend.free(self._ptr.pop(name))
            self._ptr[name] = self.backend.alloc(nbytes)
            self._size[name] = nbytes
            log.debug("scratch buffer %s: %.1f MiB", name, nbytes / 2**20)

    def ptr(self, name: str) -> int:
        if name not in self._ptr:
            raise BuildError(f"shared scratch buffer '{name}' is not allocated: was the SharedScratch closed?")
        return self._ptr[name]

    def size(self, name: str) -> int:
        return self._size.get(name, 0)

    @property
    def total_bytes(self) -> int:
        return sum(self._size.values())

    def close(self) -> None:
        """Free every buffer and the stream (engines using this scratch cannot run afterwards)."""
        with self.lock:
            for ptr in self._ptr.values():
                self.backend.free(ptr)
            self._ptr.clear()
            self._size.clear()
            if self.stream:
                self.backend.destroy_stream(self.stream)
                self.stream = 0

    def __enter__(self) -> SharedScratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user_managed_context(engine: trt.ICudaEngine) -> trt.IExecutionContext:
    """An execution context without its own activation memory (10.x and 11.x spellings)."""
    import tensorrt as trt

    if hasattr(trt, "ExecutionContextAllocationStrategy"):
        ctx = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    else:
        ctx = engine.create_execution_context_without_device_memory()
    if ctx is None:
        raise BuildError("TensorRT could not create an execution context (out of GPU memory?)")
    return ctx


def _device_memory_size(engine: trt.ICudaEngine) -> int:
    if hasattr(engine, "device_memory_size_v2"):
        return int(engine.device_memory_size_v2)
    return int(getattr(engine, "device_memory_size"))


def _set_device_memory(context: trt.IExecutionContext, ptr: int, size: int) -> None:
    if hasattr(context, "set_device_memory"):
        context.set_device_memory(ptr, size)
    else:  # TensorRT 10.0: only the property exists
        setattr(context, "device_memory", ptr)


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    """A ``trt.Dims`` as a tuple of ints (Dims index like a tuple)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def refit_from_onnx(engine: trt.ICudaEngine, onnx: Path, logger: trt.ILogger) -> None:
    """Put the weights of ``onnx`` (read through its external-data file) into a stripped ``engine``."""
    import tensorrt as trt

    if not onnx.is_file():
        raise BuildError(f"weight-stripped engine needs {onnx} (and its shared weight file) to refit: "
                         "keep the engine folder's ONNX and weights next to the engines")
    refitter = trt.Refitter(engine, logger)
    parser = trt.OnnxParserRefitter(refitter, logger)
    if not parser.refit_from_file(str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(int(getattr(parser, "num_errors", 0)), 5)))
        why = errors or "see the TensorRT errors above (-vv for its full log)"
        raise BuildError(f"refitting from {onnx.name} failed: {why}")
    if not refitter.refit_cuda_engine():
        missing = refitter.get_missing_weights()
        raise BuildError(f"refitting from {onnx.name} left weights unset: {missing[:5]}; is this the ONNX "
                         "the engine was built from?")


class TrtEngine:
    """One deserialized stitch engine, ready to run on numpy batches.

    Args:
        path: the ``.engine`` file.
        record: its manifest record (:class:`EngineRecord` or dict); when given, the engine's sha256,
            TensorRT version and GPU are checked before loading, and a stripped engine is refitted
            from the record's ONNX (relative to the engine folder, two levels above ``trt/<target>``).
        scratch: a :class:`SharedScratch` shared with other engines; None gives this engine its own.
        onnx: the ONNX to refit a stripped engine from when no record says so.
        backend: CUDA backend for a private scratch (default: cuda-python, else pycuda).
    """

    def __init__(self, path: str | Path, record: EngineRecord | Mapping[str, Any] | None = None,
                 scratch: SharedScratch | None = None, *, onnx: str | Path | None = None,
                 backend: CudaBackend | None = None) -> None:
        from ...deps import require

        require("tensorrt", "Running TensorRT engines")
        import tensorrt as trt

        self.path = Path(path)
        self.record = None if record is None else (
            record if isinstance(record, EngineRecord) else EngineRecord.from_dict(record))
        self.scratch = scratch or SharedScratch(backend)
        self._check_record()
        from . import make_logger

        self.logger = make_logger()
        with self.scratch.backend.current():  # TensorRT calls need this device current on this thread
            self.runtime = trt.Runtime(self.logger)
            if self.record is not None and self.record.version_compatible:
                self.runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
            if self.record is not None and self.record.dla_core is not None:
                self.runtime.DLA_core = self.record.dla_core  # else DLA layers would load on core 0
            self.engine = self._deserialize()
            if self.record is not None and self.record.stripped:
                folder = self.path.resolve().parents[2]
                refit_from_onnx(self.engine, Path(onnx) if onnx else folder / self.record.onnx, self.logger)
            elif onnx is not None and self.engine.refittable:
                refit_from_onnx(self.engine, Path(onnx), self.logger)
            self._setup_io()

    def _check_record(self) -> None:
        if self.record is None:
            return
        from . import gpu_environment

        check_engine_compatible(self.record, gpu_environment(self.scratch.backend), self.path)
        if not self.path.is_file():
            raise BuildError(f"engine {self.path} is missing: rebuild it with `snnet-export build`")
        if self.path.stat().st_size != self.record.size or sha256_file(self.path) != self.record.sha256:
            raise BuildError(f"engine {self.path} does not match its manifest record (sha256): it was "
                             "changed or half-copied; rebuild it with `snnet-export build`")

    def _deserialize(self) -> trt.ICudaEngine:
        engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BuildError(f"TensorRT could not deserialize {self.path}: it was probably built by another "
                             "TensorRT version or for another GPU; rebuild it with `snnet-export build`")
        return engine

    def _setup_io(self) -> None:
        import tensorrt as trt

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise BuildError(f"{self.path} has inputs {ins} and outputs {outs}; a stitch engine has one of each")
        self.input_name, self.output_name = ins[0], outs[0]
        nptype: Callable[[trt.DataType], type] = trt.nptype  # untyped in the stubs
        self.input_dtype: np.dtype[Any] = np.dtype(nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype: np.dtype[Any] = np.dtype(nptype(self.engine.get_tensor_dtype(self.output_name)))
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)  # min, opt, max Dims
        self.min_shape, self.max_shape = _shape(lo), _shape(hi)
        self.context = _user_managed_context(self.engine)
        if not self.context.set_input_shape(self.input_name, self.max_shape):
            raise BuildError(f"{self.path}: cannot set the profile's max input shape {self.max_shape}")
        out_max = _shape(self.context.get_tensor_shape(self.output_name))
        self.activation_bytes = _device_memory_size(self.engine)
        self.scratch.reserve("activations", self.activation_bytes)
        self.scratch.reserve("input", int(np.prod(self.max_shape)) * self.input_dtype.itemsize)
        self.scratch.reserve("output", int(np.prod(out_max)) * self.output_dtype.itemsize)

    def run(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run one batch ``x`` ``[batch, C, H, W]`` and return the logits ``[batch, classes]``."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        lo, hi = self.min_shape, self.max_shape
        if x.ndim != len(hi) or x.shape[1:] != hi[1:] or not lo[0] <= x.shape[0] <= hi[0]:
            raise ValueError(f"{self.path.name} takes input {list(hi[1:])} per image and batch {lo[0]}..{hi[0]}, "
                             f"got shape {list(x.shape)}")
        s, backend = self.scratch, self.scratch.backend
        with s.lock, backend.current():  # any thread may call: make the device current on this one
            _set_device_memory(self.context, s.ptr("activations"), s.size("activations"))
            if not self.context.set_input_shape(self.input_name, x.shape):
                raise InferenceError(f"{self.path.name}: TensorRT refused input shape {list(x.shape)}")
            out = np.empty(_shape(self.context.get_tensor_shape(self.output_name)), self.output_dtype)
            self.context.set_tensor_address(self.input_name, s.ptr("input"))
            self.context.set_tensor_address(self.output_name, s.ptr("output"))
            backend.htod(s.ptr("input"), x, s.stream)
            if not self.context.execute_async_v3(s.stream):
                raise InferenceError(f"{self.path.name}: execute_async_v3 failed (see the TensorRT errors above; "
                                 "-vv for its full log)")
            backend.dtoh(out, s.ptr("output"), s.stream)
            backend.sync(s.stream)
        return out

    def close(self) -> None:
        """Release the context and engine (the shared scratch stays with its owner)."""
        with self.scratch.backend.current():  # TensorRT frees device memory: the device must be current
            for attr in ("context", "engine", "runtime"):
                if hasattr(self, attr):
                    delattr(self, attr)

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_engines(folder: str | Path, target: str, ids: list[int] | None = None,
                 scratch: SharedScratch | None = None) -> dict[int, TrtEngine]:
    """Load the engines recorded for ``target`` in ``folder``'s manifest, all on one shared scratch."""
    from ...engine_folder.engine_records import stale_weights, target_records
    from ...engine_folder.manifest import load_manifest

    folder = Path(folder)
    manifest = load_manifest(folder)
    records = [r for r in target_records(manifest, target) if ids is None or r.cfg_id in ids]
    if not records:
        raise BuildError(f"{folder} has no engines built for target {target}: run "
                         f"`snnet-export build {folder} --target {target}`")
    _check_dla_loadables(records, folder, target)
    weights_sha = (manifest.get("weights") or {}).get("sha256")
    stale = [r.cfg_id for r in records if stale_weights(r, weights_sha)]
    if stale:
        raise BuildError(f"engines {stale} of {folder} were built from other weights than the folder's "
                         f"current export: rebuild them with `snnet-export build {folder} --target {target}`")
    scratch = scratch or SharedScratch()
    return {r.cfg_id: TrtEngine(folder / r.file, record=r, scratch=scratch) for r in records}


DLA_LOADABLES_PER_CORE = 16  # TensorRT: at most 16 DLA loadables resident per DLA core


def _check_dla_loadables(records: list[EngineRecord], folder: Path, target: str) -> None:
    """Refuse to load more DLA engines per core than the DLA keeps resident (each has >= 1 loadable)."""
    per_core: dict[int, int] = {}
    for r in records:
        if r.dla_core is not None:
            per_core[r.dla_core] = per_core.get(r.dla_core, 0) + 1
    over = {core: n for core, n in per_core.items() if n > DLA_LOADABLES_PER_CORE}
    if over:
        core, n = next(iter(over.items()))
        raise BuildError(f"{folder}: {n} engines of target {target} run on DLA core {core}, but a DLA core holds "
                         f"at most {DLA_LOADABLES_PER_CORE} loadables (each DLA engine has at least one): load "
                         "fewer stitches (Selector(resident='frontier') or ids=...) or split them over both cores")
