"""ONNX Runtime sessions over the shared weight file, with one in-memory copy of the weights.

Every session gets its initializers as zero-copy views of the one memory-mapped weight file
(``SessionOptions.add_initializer``), weight prepacking is disabled so MLAS does not make a
private packed copy per session, and so is ORT's NCHWc layout transformer, which would otherwise
copy every Conv weight into a blocked layout per session: all resident stitches together cost
about the weights once. Where the rest goes (per-session graph state, the activation arena, the
C heap) is measured in ``benchmarks/results/selector.md`` and explained in ``docs/memory.md``.
Imports no torch, timm or click.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...deps import require
from ...errors import InferenceError, VerifyError, first_line
from ...fileio import sha256_file
from ...engine_folder.weight_file import WeightFile, check_location


log = logging.getLogger(__name__)

_ARENA_LOCK = threading.Lock()
_ARENA_REGISTERED = False

#: graph transformers that give a session a private copy of shared weights (NCHWc reorders every
#: Conv weight into a blocked layout); disabled whenever the weights come from the shared file
PRIVATE_COPY_OPTIMIZERS = ("NchwcTransformer",)
#: run option that hands the shared arena's free regions back after each call
SHRINK_ARENA = ("memory.enable_memory_arena_shrinkage", "cpu:0")
#: the shared arena's extend strategy: kSameAsRequested (1). Under ORT's default, kNextPowerOfTwo,
#: a region is rounded up and the arena keeps its largest region across shrinkage (measured: ~10 MiB
#: left after one DeiT-B call at batch 16; ~1 MiB with regions of the requested size)
_ARENA_EXTEND_SAME_AS_REQUESTED = 1
#: glibc's M_MMAP_THRESHOLD and the fixed value :func:`lean_heap` sets (128 KiB: the arena's
#: requested-size regions of a batch-1 call are mostly under 1 MiB, and with a 1 MiB threshold they
#: came from the heap and stayed there, fragmented: 24 MiB over 71 stitches at batch 1)
_M_MMAP_THRESHOLD, _MMAP_THRESHOLD = -3, 128 << 10
_LEAN_HEAP: bool | None = None


def lean_heap() -> bool:
    """Fix glibc's mmap threshold at 128 KiB, once per process, so freed activation buffers go back.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); after that,
    buffers the activation arena hands back after a call land in the heap's free lists and stay
    resident (measured: ~90 MiB after DeiT-B at batch 16). A fixed threshold keeps every block of
    128 KiB or more in its own mapping, returned to the system on free. Returns whether it was set
    (``False`` off Linux/glibc: nothing happens there).
    """
    global _LEAN_HEAP
    with _ARENA_LOCK:
        if _LEAN_HEAP is None:
            _LEAN_HEAP = False
            if sys.platform.startswith("linux"):
                try:
                    _LEAN_HEAP = bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
                except (OSError, AttributeError):  # musl or another libc: no mallopt
                    _LEAN_HEAP = False
            log.debug("fixed glibc mmap threshold: %s", _LEAN_HEAP)
        return _LEAN_HEAP


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``, every malloc arena).

    Called after an eviction: a dropped session's graph and kernels are freed into the heap, whose
    pages otherwise stay resident. Returns whether anything was released (``False`` off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # musl or another libc: no malloc_trim
        return False


def _register_shared_arena(ort: Any) -> None:
    """Register one CPU arena on ORT's environment, once per process (sessions opt in)."""
    global _ARENA_REGISTERED
    with _ARENA_LOCK:
        if not _ARENA_REGISTERED:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, _ARENA_EXTEND_SAME_AS_REQUESTED, -1, -1))
            _ARENA_REGISTERED = True


_GLOBAL_THREADS: int | None = None


def use_global_threads(threads: int) -> int:
    """Give this process one ORT intra-op thread pool of ``threads`` threads, shared by every
    session opened with ``global_threads=True`` (instead of a pool per session).

    ORT sizes the global pools when it creates its environment; call this before the process
    opens its first ORT session. A second call with another size keeps the first (returned).
    """
    global _GLOBAL_THREADS
    ort = require("onnxruntime", "running stitches with ONNX Runtime")
    with _ARENA_LOCK:
        if _GLOBAL_THREADS is None:
            ort.set_global_thread_pool_sizes(int(threads), 1)
            _GLOBAL_THREADS = int(threads)
        return _GLOBAL_THREADS


def session_options(threads: int | None = None, share_weights: bool = True, *,
                    spinning: bool | None = None, stop_spinning: bool = False,
                    shared_arena: bool = False, global_threads: bool = False) -> Any:
    """ORT session options used everywhere (export verification, bench, selector).

    Args:
        threads: intra-op threads (``None``: ORT's default, one per physical core).
        share_weights: disable MLAS weight prepacking, so sessions keep no private packed copy.
        spinning: let idle intra-op threads spin (ORT's default, ``None``) or sleep (``False``).
        stop_spinning: stop the threads spinning when a run ends (``session.force_spinning_stop``),
            so an idle session takes no CPU from other sessions or libraries in the process.
        shared_arena: take activation memory from one arena on ORT's environment shared by every
            session that asks for it, instead of an arena per session (resident stitches that run
            one at a time then hold about one stitch's activations, not one set each).
        global_threads: run on the process-wide pool of :func:`use_global_threads` (``threads``
            is then ignored): N resident sessions share one pool instead of N pools.
    """
    ort = require("onnxruntime", "running stitches with ONNX Runtime")
    so = ort.SessionOptions()
    if shared_arena:
        _register_shared_arena(ort)
        so.add_session_config_entry("session.use_env_allocators", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if global_threads:
        so.use_per_session_threads = False
    elif threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if share_weights:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if stop_spinning:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    so.log_severity_level = 3
    return so


def ort_session(folder: str | Path, entry: Mapping[str, Any], weights: WeightFile | None,
                threads: int | None = None, providers: list[str] | None = None,
                check_hash: bool = True, *, fast: bool = False, prepack: bool = False,
                spinning: bool | None = None, stop_spinning: bool = False, shared_arena: bool = False,
                global_threads: bool = False) -> Any:
    """Open one stitch's ONNX as an ORT session.

    Args:
        folder: the engine folder.
        entry: the stitch's manifest entry (``onnx``, ``onnx_sha256``, ``initializers``).
        weights: the folder's mapped weight file; ``None`` lets ORT read the external data
            itself (a private copy per session).
        check_hash: refuse a graph file whose SHA-256 differs from the manifest's.
        fast: run the graph with its attention fused into ``com.microsoft.Attention``
            (:mod:`.ort_fast`; needs ``weights``). Same results, ONNX Runtime only.
        prepack: let MLAS prepack the weights (faster GEMMs, but a private packed copy of the
            weights per session); the default keeps one shared copy.
        spinning, stop_spinning, shared_arena, global_threads: see :func:`session_options`.
    """
    ort = require("onnxruntime", "running stitches with ONNX Runtime")
    path = Path(folder) / entry["onnx"]
    if not path.is_file():
        raise VerifyError(f"stitch {entry['id']}: {path} is missing")
    if check_hash and sha256_file(path) != entry["onnx_sha256"]:
        raise VerifyError(f"stitch {entry['id']}: {path.name} differs from the manifest (SHA-256 "
                          "mismatch: edited or corrupted; re-export or run `snnet-export verify`)")
    if weights is not None:
        check_graph_locations(path, weights.path.name)
    so = session_options(threads, share_weights=weights is not None and not prepack, spinning=spinning,
                         stop_spinning=stop_spinning, shared_arena=shared_arena, global_threads=global_threads)
    providers = providers or ["CPUExecutionProvider"]
    disabled = list(PRIVATE_COPY_OPTIMIZERS) if weights is not None and not prepack else []
    if fast:
        if weights is None:
            raise VerifyError(f"stitch {entry['id']}: the fused fast path takes its weights from the "
                              "folder's weight file; pass the folder's WeightFile")
        from .fused import fast_session

        return fast_session(folder, entry, weights, so, providers, disabled)
    keep = []
    if weights is not None:
        for name, index in entry["initializers"]:
            value = ort.OrtValue.ortvalue_from_numpy(weights.array(index))
            so.add_initializer(name, value)
            keep.append(value)
    try:
        sess = ort.InferenceSession(os.fspath(path), so, providers=providers, disabled_optimizers=disabled)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
        raise VerifyError(f"stitch {entry['id']}: ONNX Runtime refused {path.name}: "
                          f"{first_line(exc)}") from None
    sess._snnet_keepalive = (keep, so, weights)  # the buffers must outlive the session
    return sess


def check_graph_locations(path: Path, weight_file: str) -> None:
    """Refuse a graph whose external data is anything but this folder's weight file."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in init.external_data}
            check_location(path.parent, info.get("location", ""), weight_file)


class OrtRunner:
    """One stitch's ORT session as a callable: ``logits = runner(images)``.

    The one way stitches are run with ONNX Runtime: the selector, ``bench`` and export-time
    verification all call this, so what is measured is what is served. The input name is looked
    up once, not on every call.

    Args:
        session: the ORT session (:func:`ort_session`).
        cfg_id: the stitch id (for error messages).
        release_activations: after each call, hand the shared arena's free regions back to the
            system (ORT's arena shrinkage; with :func:`lean_heap` they leave the process), so an
            idle stitch holds no activation memory; costs re-mapping them on the next call.
    """

    def __init__(self, session: Any, cfg_id: int | None = None, release_activations: bool = False) -> None:
        self.session = session
        self.cfg_id = cfg_id
        self.input_name = session.get_inputs()[0].name
        self.run_options = None
        if release_activations:
            ort = require("onnxruntime", "running stitches with ONNX Runtime")
            self.run_options = ort.RunOptions()
            self.run_options.add_run_config_entry(*SHRINK_ARENA)

    def __call__(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        try:
            out: np.ndarray[Any, Any] = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)},
                                               self.run_options)[0]
            return out
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidArgument types
            shape = list(getattr(x, "shape", []))
            raise InferenceError(f"stitch {self.cfg_id}: ONNX Runtime failed on an input of shape {shape}: "
                                 f"{first_line(exc)}") from None
