"""Plan TensorRT engine builds for an engine folder (no TensorRT needed).

Pipeline: :func:`plan_build` turns ``engines/NAME/manifest.json`` plus a target profile into a
:class:`BuildPlan` (stitches, profile shapes, flags, timing cache, output files) without TensorRT;
:func:`build_engines` runs the plan through :mod:`snnet_export.engine_build.trt_builder`, skipping stitches whose
engine is up to date, and stores one :class:`EngineRecord` per engine in the manifest::

    manifest["engines"]["<target>"] = {
      "target": {...TargetProfile.to_dict()...},
      "timing_cache": "trt/<target>/timing.cache",
      "stitches": [EngineRecord.to_dict(), ...]      # one per built stitch, sorted by id
    }

:func:`check_engine_compatible` (from :mod:`snnet_export.engine_folder.engine_records`, with the record format,
the resume rule and the compatibility rules) is what the runtime calls before loading an engine: it
refuses an engine recorded for another TensorRT version or another GPU, and says why. Nothing here
imports TensorRT at module level.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..engine_folder.engine_records import EngineRecord, find_record, parse_version
from ..errors import BuildError
from ..engine_folder.manifest import load_manifest
from .targets import TargetProfile, load_target

if TYPE_CHECKING:
    from .check import CheckResult

log = logging.getLogger(__name__)

ENGINE_SUFFIX = ".engine"
__all__ = ["BuildPlan", "BuildResult", "StitchJob", "plan_build", "format_plan", "precision_flags"]


@dataclass(frozen=True)
class StitchJob:
    """One stitch to build: its ONNX file and the engine file it becomes (absolute paths)."""

    cfg_id: int
    onnx: Path
    engine: Path
    onnx_sha256: str | None = None
    opset: int | None = None


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, decided before TensorRT is touched.

    Shapes are the input's ``[batch, C, H, W]`` at the optimisation profile's min/opt/max.
    """

    folder: Path
    target: TargetProfile
    tensorrt_version: str
    tensorrt_assumed: bool
    precision: str
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    flags: tuple[str, ...]
    strip_weights: bool
    timing_cache: Path
    out_dir: Path
    weights_file: Path
    jobs: tuple[StitchJob, ...]
    notes: tuple[str, ...] = ()
    weights_sha256: str | None = None

    def rel(self, path: Path) -> str:
        """``path`` relative to the engine folder when inside it (as stored in the manifest)."""
        try:
            return path.resolve().relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engines` did: the plan, the engines built and the stitch ids skipped."""

    plan: BuildPlan
    built: tuple[EngineRecord, ...] = ()
    skipped: tuple[int, ...] = ()
    dry_run: bool = False
    reasons: Mapping[int, str] = field(default_factory=dict)
    check: CheckResult | None = None  # dry runs: what `snnet-export check` finds for this plan


# ---- decisions that depend on the TensorRT version -------------------------------------------

def precision_flags(tensorrt_version: str, precision: str) -> tuple[str, ...]:
    """Builder flags that give an FP16 engine from a ``precision`` ONNX export on this TensorRT.

    An FP32 export on TensorRT 10 is built weakly typed with ``BuilderFlag.FP16``: TensorRT may pick
    FP16 kernels anywhere. An FP16 export already says which tensors are FP16 and which stay FP32
    (LayerNorm and Softmax regions): on TensorRT 10 it is built with the ``STRONGLY_TYPED`` network
    flag (no ``FP16`` builder flag, which a strongly typed network refuses), so those FP32 regions are
    honoured exactly as TensorRT 11 does by default. TensorRT 11 removed ``BuilderFlag.FP16`` (networks
    are always strongly typed), so the FP16 must already be in the ONNX: an FP32 export is refused
    rather than silently built as FP32.
    """
    major = parse_version(tensorrt_version)[0]
    if major < 10:
        raise BuildError(f"TensorRT {tensorrt_version} is too old: snnet-export builds engines with "
                         "TensorRT 10.x or 11.x (upgrade TensorRT, or JetPack 6+ on a Jetson)")
    if major >= 11:
        if precision != "fp16":
            raise BuildError(
                f"TensorRT {tensorrt_version} builds strongly typed networks only (BuilderFlag.FP16 was "
                f"removed in TensorRT 11), so this {precision} export would give an {precision} engine. "
                "Re-export with `snnet-export export ... --precision fp16`, or build with TensorRT 10.x.")
        return ()
    return ("STRONGLY_TYPED",) if precision == "fp16" else ("FP16",)


def _check_min_version(target: TargetProfile, tensorrt_version: str) -> None:
    if parse_version(tensorrt_version) < parse_version(target.min_tensorrt):
        where = f" (JetPack {target.jetpack})" if target.jetpack else ""
        raise BuildError(f"target {target.name} needs TensorRT >= {target.min_tensorrt}{where}, but this "
                         f"machine has TensorRT {tensorrt_version}: upgrade TensorRT or pick another target")


# ---- planning ----------------------------------------------------------------------------------

def _onnx_opset(path: Path) -> int:
    """The default-domain opset of an ONNX file (its weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise BuildError(f"{path} declares no ai.onnx opset: is it an ONNX model?")


def _select_configs(manifest: Mapping[str, Any], configs: str | Iterable[int] | None) -> list[dict[str, Any]]:
    from ..selection import select_ids

    entries = {int(c["id"]): c for c in manifest.get("configs", [])}
    if not entries:
        raise BuildError("the manifest lists no exported stitch configurations: run `snnet-export export` first")
    ids = select_ids(configs, entries, where="this folder's exports (export them first or pick others)")
    return [entries[i] for i in ids]


def _profile_shapes(manifest: Mapping[str, Any], target: TargetProfile) -> tuple[tuple[int, ...], ...]:
    chw = tuple(int(v) for v in manifest.get("input_shape") or ())
    if not chw:
        raise BuildError("the manifest has no input_shape: re-export the folder with this snnet-export")
    lo, opt, hi = target.batch_min, target.batch_opt, target.batch_max
    cap = manifest.get("batch_max")
    if isinstance(cap, int) and cap < hi:
        lo, opt, hi = min(lo, cap), min(opt, cap), cap
    return (lo, *chw), (opt, *chw), (hi, *chw)


def plan_build(folder: str | Path, target: str | Path | TargetProfile, *,
               configs: str | Iterable[int] | None = None, strip_weights: bool = False,
               timing_cache: str | Path | None = None, tensorrt_version: str | None = None) -> BuildPlan:
    """Decide what ``build`` will do for ``folder`` and ``target`` (no TensorRT needed).

    Args:
        folder: an engine folder written by ``snnet-export export`` (``engines/NAME``).
        target: a built-in target name or a YAML profile path.
        configs: ids to build (``"0,3,10-20"`` or ints); None builds every exported stitch.
        strip_weights: build weight-stripped engines refitted from the shared weight file at load.
        timing_cache: timing-cache file; default ``engines/NAME/trt/<target>/timing.cache``.
        tensorrt_version: the TensorRT that will build; None plans for the target's minimum.

    Raises:
        BuildError: missing files, an opset above the target's, or a precision this TensorRT cannot
            build (FP32 exports on TensorRT 11).
    """
    folder = Path(folder)
    manifest = load_manifest(folder)
    prof = load_target(target)
    assumed = tensorrt_version is None
    version = prof.min_tensorrt if tensorrt_version is None else tensorrt_version
    if not assumed:
        _check_min_version(prof, version)
    precision = str(manifest.get("precision", "fp32"))
    flags = _plan_flags(prof, version, precision, strip_weights)
    weights = folder / str((manifest.get("weights") or {}).get("file", f"weights.{precision}.bin"))
    if not weights.is_file():
        raise BuildError(f"shared weight file {weights} is missing: re-run `snnet-export export` for {folder}")
    out_dir = folder / "trt" / prof.name
    entries = _select_configs(manifest, configs)
    if not entries:
        raise BuildError("no stitch configurations selected: pass ids like --configs 0,3,10-20")
    lo, opt, hi = _profile_shapes(manifest, prof)
    notes = []
    if hi[0] < prof.batch_max:
        notes.append(f"batch range clamped to the export's batch_max {hi[0]} (target allows {prof.batch_max})")
    inputs = entries[0].get("inputs") or [{}]
    return BuildPlan(
        folder=folder, target=prof, tensorrt_version=version, tensorrt_assumed=assumed, precision=precision,
        input_name=str(inputs[0].get("name", "input")), min_shape=lo, opt_shape=opt, max_shape=hi,
        flags=flags, strip_weights=strip_weights,
        timing_cache=Path(timing_cache) if timing_cache else out_dir / "timing.cache",
        out_dir=out_dir, weights_file=weights, jobs=_plan_jobs(folder, entries, prof, out_dir), notes=tuple(notes),
        weights_sha256=(manifest.get("weights") or {}).get("sha256"))


def _plan_flags(prof: TargetProfile, version: str, precision: str, strip_weights: bool) -> tuple[str, ...]:
    """Builder flag names (``trt.BuilderFlag`` members) for this target, TensorRT and export."""
    flags = list(precision_flags(version, precision))
    if strip_weights:
        if prof.uses_dla:
            raise BuildError(f"target {prof.name} puts layers on DLA core {prof.dla_core}; weight-stripped engines "
                             "are refitted at load, which is not supported for DLA layers: drop --strip-weights")
        if prof.version_compatible:
            raise BuildError(f"target {prof.name} builds version-compatible engines, which run on TensorRT's lean "
                             "runtime, and the lean runtime cannot refit an engine: drop --strip-weights or set "
                             "version_compatible: false")
        flags += ["STRIP_PLAN", "REFIT_IDENTICAL"]
    if prof.uses_dla and prof.gpu_fallback:
        flags.append("GPU_FALLBACK")
    if prof.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    return tuple(flags)


def _plan_jobs(folder: Path, entries: list[dict[str, Any]], prof: TargetProfile,
               out_dir: Path) -> tuple[StitchJob, ...]:
    """One job per selected config; checks that each ONNX exists and that its opset suits the target."""
    jobs = []
    for entry in entries:
        onnx_path = folder / str(entry["onnx"])
        if not onnx_path.is_file():
            raise BuildError(f"{onnx_path} (configuration {entry['id']}) is missing: re-run `snnet-export export`")
        opset = _onnx_opset(onnx_path)
        if opset > prof.max_opset:
            raise BuildError(f"{onnx_path.name} uses ONNX opset {opset} but target {prof.name}'s TensorRT "
                             f"parses opset <= {prof.max_opset}: re-export with `--opset {prof.max_opset}`")
        jobs.append(StitchJob(cfg_id=int(entry["id"]), onnx=onnx_path, opset=opset,
                              engine=out_dir / (onnx_path.stem + ENGINE_SUFFIX),
                              onnx_sha256=entry.get("onnx_sha256")))
    return tuple(jobs)


def format_plan(plan: BuildPlan, manifest: Mapping[str, Any] | None = None) -> str:
    """Human-readable plan for ``build --dry-run``; with ``manifest``, says which engines exist."""
    t = plan.target
    version = (f"{plan.tensorrt_version} (assumed: the target's minimum)" if plan.tensorrt_assumed
               else plan.tensorrt_version)
    dla = "off" if t.dla_core is None else f"core {t.dla_core} (GPU fallback {'on' if t.gpu_fallback else 'off'})"
    ws = "TensorRT default" if t.workspace_mib is None else f"{t.workspace_mib} MiB"
    weights = "stripped, refitted from the ONNX + shared weight file at load" if plan.strip_weights else "in each engine"
    cache = "exists" if plan.timing_cache.is_file() else "new"
    lines = [
        f"Build plan: {plan.folder} -> target {t.name}" + (f" ({t.description})" if t.description else ""),
        f"  TensorRT:      {version}",
        f"  precision:     {plan.precision} ONNX, shared weights {plan.rel(plan.weights_file)}",
        f"  profile:       {plan.input_name} min {list(plan.min_shape)} opt {list(plan.opt_shape)} "
        f"max {list(plan.max_shape)}",
        f"  flags:         {', '.join(plan.flags) or 'none (strongly typed)'}",
        f"  builder:       optimisation level {t.optimization_level}, workspace {ws}, DLA {dla}, "
        f"hardware compatibility {t.hardware_compatibility}, "
        f"version compatible {'yes' if t.version_compatible else 'no'}",
        f"  weights:       {weights}",
        f"  timing cache:  {plan.timing_cache} ({cache})",
        f"  output:        {plan.out_dir}/",
    ]
    lines += [f"  note:          {n}" for n in plan.notes]
    lines.append(f"  stitches ({len(plan.jobs)}):")
    for job in plan.jobs:
        status = "to build"
        rec = find_record(manifest, t.name, job.cfg_id) if manifest is not None else None
        if rec is not None and job.engine.is_file():
            status = f"built with TensorRT {rec.tensorrt_version} on {rec.gpu_name} (sm {rec.compute_capability})"
        lines.append(f"    {job.cfg_id:>4}  {plan.rel(job.onnx)} (opset {job.opset}) -> {plan.rel(job.engine)}"
                     f"  [{status}]")
    return "\n".join(lines)
