"""Build one serialized TensorRT engine from one stitch ONNX file (TensorRT 10.x and 11.x).

:class:`TrtBuilder` keeps one ``trt.Builder`` and one timing cache for all stitches of a build (the
stitches share most layer shapes, so later builds reuse earlier timings); :meth:`TrtBuilder.build`
applies a :class:`~snnet_export.engine_build.plan.BuildPlan`: the optimisation profile, workspace, optimisation
level, precision flags, DLA, hardware/version compatibility and weight stripping.

The ONNX is parsed with ``parse_from_file`` so TensorRT finds the shared external-data weight file
beside it. TensorRT 11-only or removed attributes are reached through ``getattr``/``hasattr`` so the
module type-checks against the TensorRT 10.13 stubs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BuildError
from ..fileio import write_bytes_atomic
from ..runtime.trt import make_logger

if TYPE_CHECKING:
    import tensorrt as trt

    from .plan import BuildPlan

log = logging.getLogger(__name__)
_MAX_ERRORS = 5


def _parser_errors(parser: Any) -> str:
    """The first parser errors as one line each (ParserError's string names node and reason)."""
    lines = [str(parser.get_error(i)).strip() for i in range(min(int(parser.num_errors), _MAX_ERRORS))]
    more = int(parser.num_errors) - len(lines)
    return "; ".join(lines) + (f"; ... and {more} more" if more > 0 else "")


NETWORK_FLAGS = ("STRONGLY_TYPED",)  # plan flags that go to create_network, not to the builder config


def _builder_flag(name: str) -> trt.BuilderFlag:
    """The ``trt.BuilderFlag`` a plan flag names (only flags valid on this TensorRT reach here)."""
    import tensorrt as trt

    if name == "FP16":
        return trt.BuilderFlag.FP16  # TensorRT 10 only: plans for TensorRT 11 never contain it
    if name == "STRIP_PLAN":
        return trt.BuilderFlag.STRIP_PLAN
    if name == "REFIT_IDENTICAL":
        return trt.BuilderFlag.REFIT_IDENTICAL
    if name == "GPU_FALLBACK":
        return trt.BuilderFlag.GPU_FALLBACK
    if name == "VERSION_COMPATIBLE":
        return trt.BuilderFlag.VERSION_COMPATIBLE
    raise BuildError(f"unknown builder flag {name!r} in the build plan")


def _hardware_level(level: str) -> trt.HardwareCompatibilityLevel:
    import tensorrt as trt

    if level == "none":
        return trt.HardwareCompatibilityLevel.NONE
    if level == "ampere+":
        return trt.HardwareCompatibilityLevel.AMPERE_PLUS
    same = getattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY", None)
    if same is None:
        raise BuildError(f"TensorRT {trt.__version__} has no same-compute-capability hardware compatibility: "
                         "upgrade TensorRT or use 'ampere+'")
    return same  # type: ignore[no-any-return]


def network_flags(plan_flags: tuple[str, ...] = ()) -> int:
    """``create_network`` flags: explicit batch where the enum still has it (10.x; ignored there but
    harmless), plus ``STRONGLY_TYPED`` when the plan asks for it (FP16 exports on 10.x). TensorRT 11
    networks are always strongly typed: the flag is passed only where the enum has it."""
    import tensorrt as trt

    enum = trt.NetworkDefinitionCreationFlag
    flags = 0
    wanted = ["EXPLICIT_BATCH"] + [f for f in plan_flags if f in NETWORK_FLAGS]
    for name in wanted:
        member = getattr(enum, name, None)
        if member is not None:
            flags |= 1 << int(member)
    return flags


class TrtBuilder:
    """One TensorRT builder and one timing cache shared by every stitch of a build."""

    def __init__(self, timing_cache: Path | None = None) -> None:
        import tensorrt as trt

        self.logger = make_logger()
        self.builder = trt.Builder(self.logger)
        self.timing_cache_path = timing_cache
        self._cache: trt.ITimingCache | None = None

    def _attach_timing_cache(self, config: trt.IBuilderConfig) -> None:
        """Create the shared cache on first use (from the file when present), then attach it."""
        if self._cache is None:
            path = self.timing_cache_path
            blob = path.read_bytes() if path is not None and path.is_file() else b""
            try:
                self._cache = config.create_timing_cache(blob)
            except Exception as exc:  # noqa: BLE001 - a corrupt cache file must not stop the build
                log.warning("timing cache %s is unusable (%s); starting an empty one", path, exc)
            if self._cache is None:
                self._cache = config.create_timing_cache(b"")
        if not config.set_timing_cache(self._cache, ignore_mismatch=False):
            log.warning("timing cache %s was made by another TensorRT or GPU; starting an empty one",
                        self.timing_cache_path)
            self._cache = config.create_timing_cache(b"")
            config.set_timing_cache(self._cache, ignore_mismatch=False)

    def save_timing_cache(self) -> None:
        """Write the timing cache (atomically) so the next stitch and the next run reuse it."""
        if self._cache is None or self.timing_cache_path is None:
            return
        data = self._cache.serialize()
        write_bytes_atomic(self.timing_cache_path, bytes(memoryview(data)))

    def _config(self, plan: BuildPlan) -> trt.IBuilderConfig:
        import tensorrt as trt

        t = plan.target
        config = self.builder.create_builder_config()
        if t.workspace_mib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, t.workspace_mib << 20)
        config.builder_optimization_level = t.optimization_level
        for name in plan.flags:
            if name not in NETWORK_FLAGS:
                config.set_flag(_builder_flag(name))
        if t.dla_core is not None:
            cores = self.builder.num_DLA_cores
            if t.dla_core >= cores:
                raise BuildError(f"target {t.name} asks for DLA core {t.dla_core} but this device has "
                                 f"{cores} DLA core(s): set dla.core to null or to a core below {cores}")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = t.dla_core
        if t.hardware_compatibility != "none":
            config.hardware_compatibility_level = _hardware_level(t.hardware_compatibility)
        profile = self.builder.create_optimization_profile()
        profile.set_shape(plan.input_name, trt.Dims(list(plan.min_shape)), trt.Dims(list(plan.opt_shape)),
                          trt.Dims(list(plan.max_shape)))
        config.add_optimization_profile(profile)
        self._attach_timing_cache(config)
        return config

    def build(self, onnx: Path, plan: BuildPlan) -> bytes:
        """Parse ``onnx`` (external weights resolved beside it) and return the serialized engine.

        Raises:
            BuildError: the parser rejected the model, the input name differs from the plan's, or
                TensorRT could not build an engine (its log, at WARNING/ERROR, says why).
        """
        import tensorrt as trt

        network = self.builder.create_network(network_flags(plan.flags))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx)):
            raise BuildError(f"TensorRT's ONNX parser rejected {onnx.name}: {_parser_errors(parser)}")
        inputs = [network.get_input(i).name for i in range(network.num_inputs)]
        if inputs != [plan.input_name]:
            raise BuildError(f"{onnx.name} has inputs {inputs}; the manifest promises one input "
                             f"'{plan.input_name}': re-export the folder")
        config = self._config(plan)
        serialized = self.builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"TensorRT {trt.__version__} could not build an engine from {onnx.name} for "
                             f"target {plan.target.name}: see the TensorRT errors above (-vv for its full log)")
        return bytes(memoryview(serialized))
