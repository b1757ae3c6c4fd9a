"""Manifest records of built TensorRT engines, the resume rule and the load-time compatibility check.

One :class:`EngineRecord` per built engine, stored under ``manifest["engines"][target]["stitches"]``::

    {"id": 3, "file": "trt/dgpu/stitch_003.engine", "onnx": "stitch_003.onnx", "onnx_sha256": "...",
     "weights_sha256": "...", "sha256": "...", "size": 9437184,
     "tensorrt_version": "10.13.0.35", "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
     "flags": ["FP16", "STRIP_PLAN", "REFIT_IDENTICAL"], "stripped": true,
     "hardware_compatibility": "none", "version_compatible": false, "dla_core": null,
     "builder": {"optimization_level": 3, "workspace_mib": 4096},
     "profile": {"input": "input", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [64, 3, 224, 224]},
     "build_seconds": 41.2, "built": "2026-11-21T14:00:00Z"}

Paths are relative to the engine folder. No TensorRT, torch or click here (the runtime imports it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import BuildError

# What an engine may run on besides the GPU that built it (TensorRT's HardwareCompatibilityLevel);
# target profiles choose one, records store it.
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; tolerates suffixes such as ``"10.13.0.35+cuda13"``."""
    parts = []
    for piece in str(text).split("+")[0].split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise BuildError(f"cannot read TensorRT version {text!r}: expected something like '10.3.0'")
    return tuple(parts)


@dataclass(frozen=True)
class GpuEnv:
    """The TensorRT version and GPU of this machine (what an engine is specific to)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"


@dataclass(frozen=True)
class EngineRecord:
    """What the manifest remembers about one built engine (see the module docstring)."""

    cfg_id: int
    file: str
    onnx: str
    sha256: str
    size: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    flags: tuple[str, ...] = ()
    stripped: bool = False
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    dla_core: int | None = None
    optimization_level: int | None = None  # None: recorded before snnet-export stored it
    workspace_mib: int | None = None
    input_name: str = "input"
    min_shape: tuple[int, ...] = ()
    opt_shape: tuple[int, ...] = ()
    max_shape: tuple[int, ...] = ()
    onnx_sha256: str | None = None
    weights_sha256: str | None = None
    build_seconds: float = 0.0
    built: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.cfg_id, "file": self.file, "onnx": self.onnx, "onnx_sha256": self.onnx_sha256,
            "weights_sha256": self.weights_sha256, "sha256": self.sha256, "size": self.size,
            "tensorrt_version": self.tensorrt_version,
            "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability},
            "flags": list(self.flags), "stripped": self.stripped,
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible, "dla_core": self.dla_core,
            "builder": {"optimization_level": self.optimization_level, "workspace_mib": self.workspace_mib},
            "profile": {"input": self.input_name, "min": list(self.min_shape), "opt": list(self.opt_shape),
                        "max": list(self.max_shape)},
            "build_seconds": self.build_seconds, "built": self.built,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineRecord:
        """The record of a manifest that came through :func:`.manifest.load_manifest` (or of :meth:`to_dict`).

        Trusts ``d``: the manifest door (:func:`.schema.check_manifest`) has checked every field read
        here, so a malformed record is refused there, once, with the field's name.
        """
        gpu, prof, builder = d["gpu"], d.get("profile") or {}, d.get("builder") or {}
        return cls(
            cfg_id=d["id"], file=d["file"], onnx=d["onnx"], sha256=d["sha256"], size=d["size"],
            tensorrt_version=d["tensorrt_version"], gpu_name=gpu["name"], compute_capability=gpu["compute_capability"],
            flags=tuple(d.get("flags") or ()), stripped=d.get("stripped", False),
            hardware_compatibility=d.get("hardware_compatibility", "none"),
            version_compatible=d.get("version_compatible", False), dla_core=d.get("dla_core"),
            optimization_level=builder.get("optimization_level"), workspace_mib=builder.get("workspace_mib"),
            input_name=prof.get("input", "input"), min_shape=tuple(prof.get("min") or ()),
            opt_shape=tuple(prof.get("opt") or ()), max_shape=tuple(prof.get("max") or ()),
            onnx_sha256=d.get("onnx_sha256"), weights_sha256=d.get("weights_sha256"),
            build_seconds=float(d.get("build_seconds", 0.0)), built=d.get("built", ""))


def target_records(manifest: Mapping[str, Any] | None, target: str) -> list[EngineRecord]:
    """Every engine record of ``target`` in ``manifest`` (empty if none was built)."""
    section = ((manifest or {}).get("engines") or {}).get(target) or {}
    return [EngineRecord.from_dict(r) for r in section.get("stitches", [])]


def find_record(manifest: Mapping[str, Any] | None, target: str, cfg_id: int) -> EngineRecord | None:
    """The record of stitch ``cfg_id`` built for ``target``, or None."""
    return next((r for r in target_records(manifest, target) if r.cfg_id == cfg_id), None)


def stale_weights(record: EngineRecord, weights_sha256: str | None) -> bool:
    """True when the export's shared weights (manifest sha256) differ from those the engine was built from.

    The ONNX files name their weights by offset only, so a re-export with new weights leaves them
    byte-identical: the weight file's hash is what tells the engine is stale.
    """
    return bool(weights_sha256 and record.weights_sha256 and weights_sha256 != record.weights_sha256)


def incompatibility(record: EngineRecord, env: GpuEnv) -> str | None:
    """Why an engine described by ``record`` cannot run on ``env``, or None when it can."""
    built, here = parse_version(record.tensorrt_version), parse_version(env.tensorrt_version)
    if record.version_compatible:
        if here < built:
            return (f"it was built by TensorRT {record.tensorrt_version} (version compatible), which is newer "
                    f"than this machine's TensorRT {env.tensorrt_version}")
    elif record.tensorrt_version != env.tensorrt_version:
        return (f"it was built by TensorRT {record.tensorrt_version} but this machine has TensorRT "
                f"{env.tensorrt_version} (engines run only on the TensorRT version that built them)")
    cc_built, cc_here = parse_version(record.compute_capability), parse_version(env.compute_capability)
    level = record.hardware_compatibility
    if level == "ampere+":
        if cc_here < (8, 0):
            return f"it was built for Ampere or newer GPUs but this GPU ({env.gpu_name}) is sm {env.compute_capability}"
    elif cc_built != cc_here:
        return (f"it was built for compute capability {record.compute_capability} ({record.gpu_name}) but this "
                f"GPU ({env.gpu_name}) is {env.compute_capability}")
    elif level == "none" and record.gpu_name != env.gpu_name:
        return (f"it was built on a {record.gpu_name} and this GPU is a {env.gpu_name} (build with "
                "hardware_compatibility: same-compute-capability to share engines between them)")
    return None


def check_engine_compatible(record: EngineRecord | Mapping[str, Any], env: GpuEnv, path: str | Path = "") -> None:
    """Refuse (:class:`BuildError`) to load an engine recorded for another TensorRT or GPU."""
    rec = record if isinstance(record, EngineRecord) else EngineRecord.from_dict(record)
    reason = incompatibility(rec, env)
    if reason:
        raise BuildError(f"cannot load engine {path or rec.file}: {reason}. Rebuild it on this machine "
                         "with `snnet-export build ENGINE_FOLDER --target TARGET`")
