"""TensorRT engine builds: target profiles, build planning, the builder, and the resume rule.

Owns: :mod:`.targets` (target profiles; the built-in ones ship in ``target_profiles/``),
:mod:`.plan` (``plan_build``: what to build, decided without TensorRT), :mod:`.engines`
(``build_engines``: run the plan, record each engine), :mod:`.trt_builder` (the TensorRT
10.x/11.x builder calls). No torch here.
May import: :mod:`snnet_export.engine_folder`, TensorRT (lazily, in :mod:`.trt_builder` only),
:mod:`snnet_export.runtime.trt` (GPU environment), and the top-level helpers.
"""
from __future__ import annotations

from .engines import build_engines, store_record, up_to_date_reason
from .plan import BuildPlan, BuildResult, StitchJob, format_plan, plan_build, precision_flags
from .targets import TargetProfile, list_targets, load_target

__all__ = ["BuildPlan", "BuildResult", "StitchJob", "TargetProfile", "build_engines", "format_plan",
           "list_targets", "load_target", "plan_build", "precision_flags", "store_record",
           "up_to_date_reason"]
