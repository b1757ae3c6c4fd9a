"""Run a build plan through TensorRT; record each engine in the manifest; the resume rule.

:func:`build_engines` plans (:mod:`.plan`), then builds each stitch with :mod:`.trt_builder`,
skipping stitches whose engine is up to date (:func:`up_to_date_reason`), and stores one
:class:`~snnet_export.engine_folder.engine_records.EngineRecord` per engine in the manifest. The
manifest and the timing cache are saved after every engine, so an interrupted build resumes.
Nothing here imports TensorRT at module level.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..engine_folder.engine_records import EngineRecord, GpuEnv, find_record, stale_weights
from ..engine_folder.lock import folder_lock
from ..engine_folder.manifest import load_manifest, save_manifest
from ..fileio import atomic_path, sha256_file
from ..progress import Progress, progress_bar
from .check import check_folder, require_clean
from .plan import BuildPlan, BuildResult, StitchJob, plan_build
from .targets import TargetProfile

if TYPE_CHECKING:
    from .trt_builder import TrtBuilder

log = logging.getLogger(__name__)


def store_record(manifest: dict[str, Any], target: TargetProfile, timing_cache: str, record: EngineRecord) -> None:
    """Insert or replace ``record`` under ``manifest["engines"][target.name]`` (in memory)."""
    engines = manifest.setdefault("engines", {})
    section = engines.setdefault(target.name, {})
    section["target"] = target.to_dict()
    section["timing_cache"] = timing_cache
    rows = [r for r in section.get("stitches", []) if int(r.get("id", -1)) != record.cfg_id]
    rows.append(record.to_dict())
    section["stitches"] = sorted(rows, key=lambda r: int(r["id"]))


def up_to_date_reason(plan: BuildPlan, job: StitchJob, record: EngineRecord | None, env: GpuEnv) -> str | None:
    """None when ``job``'s engine can be kept as is; otherwise why it must be (re)built."""
    if record is None:
        return "not built yet"
    if not job.engine.is_file():
        return "engine file missing"
    if record.tensorrt_version != env.tensorrt_version:
        return f"recorded TensorRT {record.tensorrt_version}, this machine has {env.tensorrt_version}"
    if (record.gpu_name, record.compute_capability) != (env.gpu_name, env.compute_capability):
        return f"recorded for {record.gpu_name} (sm {record.compute_capability}), this GPU is {env.gpu_name}"
    if job.onnx_sha256 and record.onnx_sha256 and job.onnx_sha256 != record.onnx_sha256:
        return "the ONNX export changed"
    if stale_weights(record, plan.weights_sha256):
        return "the shared weight file changed"
    t = plan.target  # every setting that changes the engine TensorRT builds is part of the key
    settings = (tuple(plan.flags), plan.strip_weights, plan.min_shape, plan.opt_shape, plan.max_shape,
                t.hardware_compatibility, t.dla_core, t.optimization_level, t.workspace_mib)
    recorded = (record.flags, record.stripped, record.min_shape, record.opt_shape, record.max_shape,
                record.hardware_compatibility, record.dla_core, record.optimization_level, record.workspace_mib)
    if settings != recorded:
        return "build settings changed"
    if job.engine.stat().st_size != record.size or sha256_file(job.engine) != record.sha256:
        return "engine file differs from its record"
    return None



def _make_record(plan: BuildPlan, job: StitchJob, env: GpuEnv, seconds: float) -> EngineRecord:
    t = plan.target
    return EngineRecord(
        cfg_id=job.cfg_id, file=plan.rel(job.engine), onnx=plan.rel(job.onnx), onnx_sha256=job.onnx_sha256,
        weights_sha256=plan.weights_sha256,
        sha256=sha256_file(job.engine), size=job.engine.stat().st_size,
        tensorrt_version=env.tensorrt_version, gpu_name=env.gpu_name, compute_capability=env.compute_capability,
        flags=plan.flags, stripped=plan.strip_weights, hardware_compatibility=t.hardware_compatibility,
        version_compatible=t.version_compatible, dla_core=t.dla_core, optimization_level=t.optimization_level,
        workspace_mib=t.workspace_mib, input_name=plan.input_name,
        min_shape=plan.min_shape, opt_shape=plan.opt_shape, max_shape=plan.max_shape,
        build_seconds=round(seconds, 3), built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _build_one(builder: TrtBuilder, plan: BuildPlan, job: StitchJob, env: GpuEnv) -> EngineRecord:
    start = time.perf_counter()
    data = builder.build(job.onnx, plan)
    with atomic_path(job.engine) as tmp:
        tmp.write_bytes(data)
    builder.save_timing_cache()
    return _make_record(plan, job, env, time.perf_counter() - start)


def build_engines(folder: str | Path, target: str | Path | TargetProfile, *,
                  configs: str | Iterable[int] | None = None, strip_weights: bool = False,
                  timing_cache: str | Path | None = None, dry_run: bool = False, force: bool = False,
                  progress: bool = True) -> BuildResult:
    """Build one TensorRT engine per selected stitch of ``folder`` for ``target``.

    Stitches whose engine exists and whose record matches (engine sha256, ONNX, TensorRT version,
    GPU, build settings) are skipped unless ``force``. The manifest and the timing cache are saved
    after every engine, so an interrupted build resumes where it stopped. ``dry_run`` only plans and
    checks (the result's ``check`` lists what TensorRT would reject; it does not raise).

    Raises:
        MissingDependencyError: TensorRT or cuda-python is not installed (not for ``dry_run``).
        CheckError: :func:`~snnet_export.engine_build.check.check_folder` found what TensorRT would reject.
        BuildError: a plan error (see :func:`plan_build`) or a failed build.
    """
    kwargs: dict[str, Any] = dict(configs=configs, strip_weights=strip_weights, timing_cache=timing_cache)
    from ..deps import is_tensorrt_available, require

    if dry_run:  # plan for the installed TensorRT if there is one, else for the target's minimum
        from ..runtime.trt import tensorrt_version

        version = tensorrt_version() if is_tensorrt_available() else None
        plan = plan_build(folder, target, tensorrt_version=version, **kwargs)
        check = check_folder(plan.folder, plan.target, tensorrt_version=plan.tensorrt_version,
                             configs=[j.cfg_id for j in plan.jobs])
        return BuildResult(plan=plan, dry_run=True, check=check)

    require("tensorrt", "Building TensorRT engines")
    from ..runtime.trt import gpu_environment
    from .trt_builder import TrtBuilder

    env = gpu_environment()
    plan = plan_build(folder, target, tensorrt_version=env.tensorrt_version, **kwargs)
    # what TensorRT's parser/builder would reject, all listed before the first (slow) build
    require_clean(check_folder(plan.folder, plan.target, tensorrt_version=env.tensorrt_version,
                               configs=[j.cfg_id for j in plan.jobs]))
    with folder_lock(plan.folder, "build"):
        manifest = load_manifest(plan.folder)
        log.info("building %d engine(s) for %s with TensorRT %s on %s (sm %s)", len(plan.jobs), plan.target.name,
                 env.tensorrt_version, env.gpu_name, env.compute_capability)
        builder = TrtBuilder(plan.timing_cache)
        built: list[EngineRecord] = []
        skipped: list[int] = []
        reasons: dict[int, str] = {}
        bar = _progress(len(plan.jobs), progress)
        try:
            for n, job in enumerate(plan.jobs, 1):
                name = job.onnx.stem
                old = find_record(manifest, plan.target.name, job.cfg_id)
                reason = "--force" if force else up_to_date_reason(plan, job, old, env)
                if reason is None:
                    skipped.append(job.cfg_id)
                    log.info("[%d/%d] %s: up to date, skipped", n, len(plan.jobs), name)
                else:
                    reasons[job.cfg_id] = reason
                    record = _build_one(builder, plan, job, env)
                    store_record(manifest, plan.target, plan.rel(plan.timing_cache), record)
                    save_manifest(plan.folder, manifest)
                    built.append(record)
                    log.info("[%d/%d] %s: built in %.1f s, %.1f MiB (%s)", n, len(plan.jobs), name,
                             record.build_seconds, record.size / 2**20, reason)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return BuildResult(plan=plan, built=tuple(built), skipped=tuple(skipped), reasons=reasons)


def _progress(total: int, enabled: bool) -> Progress[None] | None:
    """Progress on stderr (a bar on a terminal, a line per engine elsewhere) when INFO logging is off
    (otherwise the per-stitch log lines are the progress)."""
    if not enabled or log.isEnabledFor(logging.INFO) or total < 2:
        return None
    return progress_bar(None, "build", unit="engine", total=total)

