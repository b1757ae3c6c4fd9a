"""Measure every stitch of an engine folder on this machine: ``profile.<device>.json``.

``profile_from_engines`` keeps every selected stitch open and times them with ONNX Runtime (or
TensorRT engines) in interleaved rounds over all stitches and batches, until each has ``runs``
timed runs and ``min_seconds`` of timed work, then keeps sampling the stitches whose ranking is not
known yet (:mod:`.sampling`: CI target, ties with FLOPs neighbours, time budget); it records throughput (images/s, from the median
latency), latency mean/p50/p90/p99, the 95 % CI of the median (:mod:`.stats`), the achieved
fraction of the machine's matmul peak (:mod:`.peak`) and the machine's load and clock, then merges
into this device's existing profile (:mod:`.merge`). With ``baseline_torch=True`` the same stitches
run in PyTorch eager (:mod:`.baseline`), interleaved with the backend's runs.

The measurement loop imports no torch; only the baseline does. Schema: :mod:`.engine_folder.profile`.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..errors import BenchError
from .baseline import torch_baseline
from ..engine_folder.profile import PROFILE_SCHEMA, PROFILE_VERSION, cpu_name, device_name, profile_path
from .ties import DEFAULT_TARGET

log = logging.getLogger(__name__)

BACKENDS = ("ort", "trt")
#: ONNX Runtime settings ``bench`` can measure (see docs/ort.md)
#: Every mode stops its threads spinning when a run ends: a session left spinning steals a core
#: from whatever runs next (another stitch, or the interleaved PyTorch baseline, whose OpenMP
#: barriers then stall: measured 108 ms instead of 65 ms for DeiT-S at batch 1 on 2 cores).
ORT_MODES: dict[str, dict[str, Any]] = {
    # stock graph, one shared copy of the weights, no prepacking
    "shared": {"fast": False, "prepack": False, "spinning": None, "stop_spinning": True},
    # attention fused into com.microsoft.Attention; still one shared copy of the weights, and about
    # half the per-session memory of ``shared`` (fewer nodes; benchmarks/results/selector.md)
    "fused": {"fast": True, "prepack": False, "spinning": None, "stop_spinning": True},
    # ORT-only fast path: fused attention + MLAS-prepacked weights (a private copy per session)
    "fast": {"fast": True, "prepack": True, "spinning": None, "stop_spinning": True},
}
#: the default: the selector runs the mode its profile was measured with, so its budgets hold;
#: ``fused`` is as fast as ``shared`` (benchmarks/results/efficiency.md) and keeps all 71 DeiT stitches
#: resident in <= 1.3x the weight file (benchmarks/results/selector.md), ``shared`` does not
DEFAULT_ORT_MODE = "fused"
#: interleaved rounds a stitch's runs are spread over (see ``profile_from_engines``)
DEFAULT_ROUNDS = 5
Runner = Callable[[np.ndarray], Any]


def parse_batches(batches: str | int | Iterable[int]) -> tuple[int, ...]:
    """``"1,16"`` (or ints) -> ``(1, 16)``; raise :class:`BenchError` on anything else."""
    items = str(batches).split(",") if isinstance(batches, (str, int)) else list(batches)
    try:
        out = tuple(int(str(b).strip()) for b in items)
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise BenchError(f"bad batch list '{batches}': expected positive integers like 1,16")
    return tuple(dict.fromkeys(out))


def default_threads() -> int:
    """CPU cores this process may use (its affinity mask), the default thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# ---- runners: one callable per stitch and backend ------------------------------------------------

def ort_options(mode: str, spinning: bool | None = None) -> dict[str, Any]:
    """``ort_session`` keywords of ``mode``, with ``spinning`` overriding the mode's when given."""
    if mode not in ORT_MODES:
        raise BenchError(f"unknown ONNX Runtime mode '{mode}': expected one of {sorted(ORT_MODES)}")
    opts = dict(ORT_MODES[mode])
    if spinning is not None:
        opts["spinning"] = spinning
    return opts


def ort_settings(mode: str, threads: int, spinning: bool | None = None) -> dict[str, Any]:
    """The ONNX Runtime settings of ``mode`` as recorded in a profile's environment."""
    opts = ort_options(mode, spinning)
    return {"mode": mode, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "sequential",
            "intra_op_num_threads": threads, "inter_op_num_threads": 1,
            "allow_spinning": "default (1)" if opts["spinning"] is None else int(opts["spinning"]),
            "force_spinning_stop": int(opts["stop_spinning"]),
            "prepacking": opts["prepack"], "fused_attention": opts["fast"],
            "weights": "shared file, zero-copy" + (" + private prepacked copies" if opts["prepack"] else "")}


def ort_runners(folder: Path, manifest: dict[str, Any], ids: Sequence[int], threads: int,
                mode: str, spinning: bool | None = None) -> Iterable[tuple[int, Runner]]:
    """Open each stitch's ORT session in turn and yield its runner (the caller keeps them resident)."""
    from ..engine_folder.manifest import config_entry
    from ..runtime.ort.runner import OrtRunner, ort_session
    from ..engine_folder.weight_file import WeightFile

    opts = ort_options(mode, spinning)
    weights = WeightFile(folder, manifest["weights"])
    for cfg_id in ids:
        # one activation arena for all open sessions, as in the selector
        sess = ort_session(folder, config_entry(manifest, cfg_id), weights, threads=threads, shared_arena=True,
                           **opts)
        yield cfg_id, OrtRunner(sess, cfg_id)
        del sess


def trt_runners(folder: Path, manifest: Mapping[str, Any], ids: Sequence[int], target: str | None,
                batches: Sequence[int] = ()) -> tuple[str, str, str, Iterable[tuple[int, Runner]]]:
    """``(device id, GPU name, target, runners)`` of the TensorRT engines built for ``target``."""
    from ..deps import require

    require("tensorrt", "benchmarking TensorRT engines (`snnet-export bench --backend trt`)")
    from ..runtime.trt.runner import load_engines

    targets = sorted((manifest.get("engines") or {}))
    if target is None:
        if len(targets) != 1:
            raise BenchError(f"{folder} has engines for targets {targets or 'none'}: name one with --target "
                             "(build them with `snnet-export build`)")
        target = targets[0]
    engines = load_engines(folder, target, list(ids))
    for i, eng in engines.items():
        lo, hi = eng.min_shape[0], eng.max_shape[0]
        if any(not lo <= b <= hi for b in batches):
            raise BenchError(f"the {target} engine of stitch {i} takes batch {lo}..{hi}; asked for {list(batches)} "
                             f"(rebuild with a target whose batch range covers them)")
    from ..runtime.trt import this_gpu_device

    backend = next(iter(engines.values())).scratch.backend
    gpu, device = backend.device_info()[0], this_gpu_device(backend)  # this GPU, as the selector looks it up
    return device, gpu, target, ((i, engines[i].run) for i in ids if i in engines)


# ---- the profile -----------------------------------------------------------------------------------

def select_stitches(manifest: Mapping[str, Any], configs: str | Sequence[int] | None, folder: Path) -> list[int]:
    """The exported stitch ids named by ``configs`` (``None``: every exported one)."""
    from ..selection import select_ids

    exported = [e["id"] for e in manifest["configs"]]
    if not exported:
        raise BenchError(f"{folder} holds no exported stitch: run `snnet-export export` first")
    return select_ids(configs, exported, where=f"the exports of {folder}")


def _reusable(folder: Path, ids: Sequence[int], batches: Sequence[int], threads: int, mode: str,
              baseline: bool) -> dict[str, Any] | None:
    """This device's ORT profile if it already holds these measurements, else ``None``."""
    from ..engine_folder.profile import find_profile

    old = find_profile(folder, "ort")
    if old is None or old.get("ort_mode") != mode or (old.get("environment") or {}).get("threads") != threads:
        return None
    have = {(r["id"], r["batch"]) for r in old.get("stitches", [])}
    if not all((i, b) in have for i in ids for b in batches) or (baseline and "baseline" not in old):
        return None
    log.info("reusing %s (same stitches, batches and settings)", old.get("_file"))
    return old


def environment(threads: int, manifest: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """What a measurement depends on: CPU, threads, versions, precision, machine load."""
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": threads,
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "snnet_export": __version__,
            "precision": manifest.get("precision"), "family": (manifest.get("family") or {}).get("name"),
            **extra}


def _backend_versions(backend: str) -> dict[str, Any]:
    import importlib

    mod = importlib.import_module("onnxruntime" if backend == "ort" else "tensorrt")
    return {"onnxruntime" if backend == "ort" else "tensorrt": mod.__version__}


def profile_from_engines(
    folder: str | Path, backend: str = "ort", batches: str | Iterable[int] = (1, 16),
    configs: str | Sequence[int] | None = None, warmup: int = 3, runs: int = 20,
    threads: int | None = None, baseline_torch: bool = False, min_seconds: float = 1.0, *,
    ort_mode: str = DEFAULT_ORT_MODE, target: str | None = None, progress: bool = True,
    write: bool = True, reuse: bool = False, spinning: bool | None = None, rounds: int = DEFAULT_ROUNDS,
    replace: bool = False, peak: bool = True, ci_target: float | None = DEFAULT_TARGET,
    time_budget: float | None = None, max_runs: int = 1000,
) -> dict[str, Any]:
    """Measure each stitch of an engine folder on this machine and write (or merge) its profile.

    All selected stitches stay open, and the timing goes in ``rounds`` rounds; each round visits
    every stitch and batch (in a rotated order) for its share of the runs, so a load change while
    ``bench`` runs spreads over all stitches instead of biasing the ones measured during it.

    Args:
        folder: the engine folder (``manifest.json``, stitch ONNX files, weight file).
        backend: ``ort`` (ONNX Runtime, CPU) or ``trt`` (the folder's TensorRT engines).
        batches: batch sizes, e.g. ``(1, 16)`` or ``"1,16"``.
        configs: stitch ids (``"0-2,10"`` or a list); ``None`` measures every exported one.
        warmup, runs, min_seconds: untimed runs (before the first round; one per later visit), then
            in all at least ``runs`` timed runs and ``min_seconds`` of timed work per stitch and batch.
        rounds: interleaved rounds the runs are spread over.
        threads: intra-op threads of ORT and of the PyTorch baseline (default: usable cores).
        baseline_torch: also time PyTorch eager, interleaved, under ``profile["baseline"]["torch"]``.
        ort_mode: a key of :data:`ORT_MODES` (``shared``: stock graphs, one weight copy;
            ``fused``, the default: + fused attention; ``fast``: + prepacked weights, a copy per session).
        spinning: override the mode's thread spinning (``False`` helps on an oversubscribed CPU).
        target: the TensorRT target whose engines to load (default: the folder's only one).
        write: write ``profile.<device>.json`` atomically into ``folder``, merged with this device's
            existing profile of the same settings (re-measured stitches replaced, others kept).
        replace: discard an existing profile measured with other settings instead of refusing.
        reuse: return this device's existing profile instead when it already covers these
            stitches and batches with the same settings (no measurement).
        peak: measure the machine's FP32 matmul peak first (CPU backends; ~3 s) and record each
            stitch's achieved GFLOP/s as a fraction of it.
        ci_target, time_budget, max_runs: after the first pass, keep sampling each stitch-batch
            until its 95 % CI half-width is ``<= ci_target`` (relative; ``None``: first pass only) or
            it is separated from or tied with its FLOPs neighbours, until ``time_budget`` seconds of
            measuring are spent, at most ``max_runs`` runs each (:mod:`.sampling`, :mod:`.ties`).

    Returns:
        The profile (schema in :mod:`snnet_export.engine_folder.profile`).

    Raises:
        BenchError: bad batches, stitches or backend, or an existing profile whose settings differ
            (unless ``replace``). MissingDependencyError: no TensorRT.
    """
    from ..engine_folder.manifest import load_manifest

    folder = Path(folder)
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend '{backend}': expected one of {', '.join(BACKENDS)}")
    batches = parse_batches(batches)
    manifest = load_manifest(folder)
    if not write:
        return _profile_locked(folder, backend, batches, manifest, configs, warmup, runs, threads, baseline_torch,
                               min_seconds, ort_mode, target, progress, False, reuse, spinning,
                               (rounds, replace, peak, (ci_target, time_budget, max_runs)))
    from ..engine_folder.lock import folder_lock
    from ..fileio import check_writable

    # checked before measuring, so a read-only folder never costs the measurement at the final write
    # (a TensorRT profile's name needs the GPU's; the folder's writability is what matters)
    probe = profile_path(folder, device_name(backend), backend) if backend == "ort" else folder / "profile.trt.json"
    check_writable(probe, "profile", BenchError, folder=False)
    with folder_lock(folder, "bench"):
        return _profile_locked(folder, backend, batches, manifest, configs, warmup, runs, threads, baseline_torch,
                               min_seconds, ort_mode, target, progress, True, reuse, spinning,
                               (rounds, replace, peak, (ci_target, time_budget, max_runs)))


def _profile_locked(folder: Path, backend: str, batches: tuple[int, ...], manifest: dict[str, Any],
                    configs: str | Sequence[int] | None, warmup: int, runs: int, threads: int | None,
                    baseline_torch: bool, min_seconds: float, ort_mode: str, target: str | None,
                    progress: bool, write: bool, reuse: bool, spinning: bool | None,
                    more: tuple[int, bool, bool, tuple[float | None, float | None, int]]) -> dict[str, Any]:
    """The measuring part of :func:`profile_from_engines` (under the folder lock when it writes).

    ``more`` is ``(rounds, replace, peak, (ci_target, time_budget, max_runs))``.
    """
    from .merge import finish_profile
    from .peak import add_efficiency, matmul_peak, peak_of_run
    from . import sampling
    from .stats import machine_state

    rounds, replace, peak, policy = more
    ids = select_stitches(manifest, configs, folder)
    threads = int(threads or default_threads())
    if reuse and backend == "ort" and spinning is None:
        old = _reusable(folder, ids, batches, threads, ort_mode, baseline_torch)
        if old is not None:
            return old
    if backend == "ort":
        extra: dict[str, Any] = {"ort": ort_settings(ort_mode, threads, spinning)}
        device, runners = device_name("ort"), ort_runners(folder, manifest, ids, threads, ort_mode, spinning)
    else:
        device, gpu, target, runners = trt_runners(folder, manifest, ids, target, batches)
        extra = {"gpu": gpu, "target": target}
    extra.update(_backend_versions(backend))
    torch_run = None
    if baseline_torch:
        torch_run, torch_env = torch_baseline(manifest, threads, cuda=backend == "trt")
        extra.update(torch_env)
    before = machine_state()
    peaks = [matmul_peak(threads)] if peak and backend == "ort" else []
    t0 = time.perf_counter()
    records, base, summary = sampling.sample_until_resolved(backend, dict(runners), manifest, batches, torch_run,
                                                    (warmup, runs, min_seconds, rounds), progress, policy)
    seconds = round(time.perf_counter() - t0, 1)
    if peaks:  # before and after: the machine's speed drifts; the run's peak is the better of the two
        extra["matmul_peak"] = peak_of_run(peaks + [matmul_peak(threads)])
    after = machine_state()
    extra["load_average"] = {"before": before["load_average"], "after": after["load_average"]} \
        if before["load_average"] else None
    extra["cpu_mhz"] = {"before": before["cpu_mhz"], "after": after["cpu_mhz"]}
    extra["timing"] = {"warmup": warmup, "runs": runs, "min_seconds": min_seconds, "rounds": rounds,
                       "throughput": "batch / median latency", "ci95": "order statistics of the median",
                       "order": "interleaved rounds over all stitches and batches, then rounds over the unsettled",
                       "seconds": seconds, "sampling": summary}
    add_efficiency(records, manifest, (extra.get("matmul_peak") or {}).get("gflops"))
    profile: dict[str, Any] = {
        "schema": PROFILE_SCHEMA, "version": PROFILE_VERSION, "device": device, "backend": backend,
        "precision": manifest.get("precision"),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment(threads, manifest, **extra), "batches": list(batches), "stitches": records,
    }
    profile.update({"ort_mode": ort_mode} if backend == "ort" else {"target": extra["target"]})
    if torch_run is not None:
        profile["baseline"] = {"torch": base}
    return finish_profile(folder, profile, write, replace, manifest)
