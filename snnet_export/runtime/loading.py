"""How the selector turns stitch ids into runners: the weight-file guard, ONNX Runtime loaders, the budget.

:func:`ort_runners` opens sessions up front (every resident stitch for the life of the Selector);
:func:`budgeted_runners` puts the same loader behind a :class:`~.residency.Residency`, so stitches load
on first use and the least recently used are evicted to stay within ``max_resident_mb``. Either way
each session reads its weights from the one memory map of the folder's weight file and hands its
activation memory back after every call (:class:`~.ort.runner.OrtRunner` ``release_activations``).
Imports NumPy and (lazily) onnxruntime only.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import MemoryBudgetError, VerifyError
from .residency import MiB, Residency, ResidentRunner, check_budget, estimate_session_bytes, rss_bytes

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]


class _Guarded:
    """A runner that first checks the weight file is still the one the sessions mapped.

    One ``os.stat`` per call (a system call, small next to any inference): a file replaced, truncated or rewritten under
    a live Selector is refused with a :class:`VerifyError` instead of serving wrong weights or
    dying of SIGBUS on a truncated memory map. (A change between this check and the run itself
    is not caught: see README, Reliability.)
    """

    def __init__(self, runner: Runner, path: Path, stamp: tuple[int, int, int]) -> None:
        self.runner, self.path, self.stamp = runner, path, stamp

    def __call__(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        check_unchanged(self.path, self.stamp)
        return self.runner(x)

    def __getattr__(self, name: str) -> Any:  # session, cfg_id, ... of the wrapped runner
        return getattr(self.runner, name)


def file_stamp(path: Path) -> tuple[int, int, int]:
    """``(inode, size, mtime_ns)`` of ``path``: what :class:`_Guarded` compares per call."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def check_unchanged(path: Path, stamp: tuple[int, int, int]) -> None:
    """Raise :class:`VerifyError` when ``path`` is gone or differs from ``stamp``."""
    try:
        now = file_stamp(path)
    except OSError:
        raise VerifyError(f"weight file {path} disappeared under a running Selector: restore it and "
                          "reopen the Selector") from None
    if now != stamp:
        what = "truncated" if now[1] < stamp[1] else "replaced or modified"
        raise VerifyError(f"weight file {path} was {what} under a running Selector ({stamp[1]} -> {now[1]} "
                          "bytes): refusing to run on it; reopen the Selector once the folder is complete")


def _warm_environment(global_threads: bool) -> None:
    """Open (and drop) a one-node ORT session, so ORT's one-time set-up (kernel registries, ~10 MiB)
    is not measured as the first stitch's session size."""
    from onnx import TensorProto, helper

    from ..deps import require
    from .ort.runner import session_options

    ort = require("onnxruntime", "running stitches with ONNX Runtime")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = session_options(1, share_weights=False, global_threads=global_threads)
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def prepare_ort(shared_threads: int | None) -> int | None:
    """Import and set up ONNX Runtime (its global pool when ``shared_threads``); returns the RSS then.

    A budgeted Selector calls this first, so the growth it holds against its budget starts after
    ONNX Runtime's one-time set-up and covers everything the Selector itself adds.
    """
    from .ort.runner import use_global_threads

    if shared_threads:
        use_global_threads(shared_threads)  # before ORT's environment exists
    _warm_environment(bool(shared_threads))
    return rss_bytes()


def ort_loader(folder: Path, manifest: Mapping[str, Any], *, threads: int | None, fused: bool,
               shared_threads: int | None, check_weights: bool) -> tuple[Callable[[int], Runner], Any]:
    """A function that opens one stitch of ``folder`` as a runner, and the folder's :class:`WeightFile`.

    Every session shares one mapped weight file and one activation arena (only one stitch runs at
    a time per caller) that is emptied after each call; with ``check_weights`` each call first
    checks the file is unchanged (:class:`_Guarded`).
    """
    from ..engine_folder.weight_file import WeightFile
    from .ort.runner import OrtRunner, lean_heap, ort_session, use_global_threads

    weights = WeightFile(folder, manifest["weights"])
    stamp = file_stamp(weights.path)
    entries = {e["id"]: e for e in manifest["configs"]}
    if shared_threads:
        use_global_threads(shared_threads)
    lean_heap()

    def load(cfg_id: int) -> Runner:
        sess = ort_session(folder, entries[cfg_id], weights, threads=threads, fast=fused, shared_arena=True,
                           global_threads=bool(shared_threads))
        runner: Runner = OrtRunner(sess, cfg_id, release_activations=True)
        return _Guarded(runner, weights.path, stamp) if check_weights else runner

    return load, weights


def ort_runners(folder: Path, manifest: Mapping[str, Any], ids: Sequence[int], **options: Any) -> dict[int, Runner]:
    """Open ``ids`` now, each for the life of the Selector (see :func:`ort_loader` for ``options``)."""
    load, _ = ort_loader(folder, manifest, **options)
    return {i: load(i) for i in ids}


def budgeted_runners(folder: Path, manifest: Mapping[str, Any], ids: Sequence[int], preload: Sequence[int],
                     max_resident_mb: float, rss_baseline: int | None = None, **options: Any) -> tuple[dict[int, Runner], Residency]:
    """Runners for ``ids`` that load on first use within ``max_resident_mb`` (weights + sessions).

    ``preload`` is loaded now, in order, as far as it fits. ``rss_baseline``: the process's RSS
    before the Selector began opening (default: measured here, once onnxruntime is set up); the
    budget also holds against the growth from it. Raises :class:`MemoryBudgetError` when
    the budget cannot hold the weight file and the largest of ``ids``' sessions.
    """
    if isinstance(max_resident_mb, bool) or not isinstance(max_resident_mb, (int, float)) \
            or not math.isfinite(max_resident_mb) or max_resident_mb <= 0:
        raise MemoryBudgetError(f"max_resident_mb must be a finite positive number of MiB, got {max_resident_mb!r}")
    entries = {e["id"]: e for e in manifest["configs"]}
    estimates = {i: estimate_session_bytes(entries[i].get("onnx_bytes") or (folder / entries[i]["onnx"]).stat().st_size)
                 for i in ids}
    budget = int(max_resident_mb * MiB)
    check_budget(budget, manifest["weights"]["size"], estimates)  # before mapping anything
    from .ort.runner import trim_heap

    now = prepare_ort(options.get("shared_threads"))
    before = now if rss_baseline is None else rss_baseline  # nothing of the folder mapped yet
    load, weights = ort_loader(folder, manifest, **options)
    residency = Residency(load, weights.path.stat().st_size, budget, estimates, rss_baseline=before, trim=trim_heap)
    loaded = residency.preload(list(preload))
    log.info("max_resident_mb=%s: %d of %d stitches resident at start", max_resident_mb, len(loaded), len(ids))
    return {i: ResidentRunner(residency, i) for i in ids}, residency
