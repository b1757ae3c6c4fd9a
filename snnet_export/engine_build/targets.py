"""Target profiles for ``snnet-export build``: one YAML file per GPU or Jetson target.

A profile says how engines are built for one kind of device (batch range, workspace, builder
optimisation level, DLA, hardware/version compatibility) and what that device's TensorRT accepts
(minimum version, highest ONNX opset). Built-in profiles ship inside the package
(``snnet_export/engine_build/target_profiles/``, read with :mod:`importlib.resources`, so an installed
wheel has them); the current directory's ``engines/targets/`` may add more. Any other profile is
loaded from a YAML path. Nothing here imports TensorRT.

YAML format (every key optional, ``name`` defaults to the file stem; unknown keys are errors)::

    name: jetson-orin              # folder name under engines/NAME/trt/; defaults to the file stem
    description: Jetson AGX Orin, JetPack 6.1+
    platform: jetson               # dgpu | jetson
    jetpack: "6.1+"                # informational: the JetPack that provides TensorRT
    min_tensorrt: "10.3"           # refuse to build with an older TensorRT
    max_opset: 20                  # highest ONNX opset this TensorRT's parser takes (`check` also
                                   # caps it by the support table's row for min_tensorrt)
    batch: {min: 1, opt: 4, max: 16}
    workspace_mib: 2048            # builder workspace pool limit; null = TensorRT's default
    optimization_level: 3          # builder optimisation level 0-5
    dla: {core: null, gpu_fallback: true}   # core 0/1 puts layers on a DLA (Jetson Orin only)
    hardware_compatibility: none   # none | ampere+ | same-compute-capability
    version_compatible: false      # BuilderFlag.VERSION_COMPATIBLE (runs on later TensorRT)
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..engine_folder.engine_records import HARDWARE_COMPATIBILITY
from ..errors import TargetError
from ..fields import Fields

PLATFORMS = ("dgpu", "jetson")
_TOP_KEYS = {"name", "description", "platform", "jetpack", "min_tensorrt", "max_opset", "batch",
             "workspace_mib", "optimization_level", "dla", "hardware_compatibility", "version_compatible"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


@dataclass(frozen=True)
class TargetProfile:
    """How engines are built for one device kind (see the module docstring for the YAML keys)."""

    name: str
    description: str = ""
    platform: str = "dgpu"
    jetpack: str | None = None
    min_tensorrt: str = "10.0"
    max_opset: int = 20  # TensorRT 10.0's parser: opsets 9..20
    batch_min: int = 1
    batch_opt: int = 8
    batch_max: int = 64
    workspace_mib: int | None = 4096
    optimization_level: int = 3
    dla_core: int | None = None
    gpu_fallback: bool = True
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    source: str = ""

    @property
    def uses_dla(self) -> bool:
        return self.dla_core is not None

    def to_dict(self) -> dict[str, Any]:
        """The profile in its YAML layout (without ``source``), e.g. for a manifest record."""
        d = asdict(self)
        return {
            "name": d["name"], "description": d["description"], "platform": d["platform"],
            "jetpack": d["jetpack"], "min_tensorrt": d["min_tensorrt"], "max_opset": d["max_opset"],
            "batch": {"min": d["batch_min"], "opt": d["batch_opt"], "max": d["batch_max"]},
            "workspace_mib": d["workspace_mib"], "optimization_level": d["optimization_level"],
            "dla": {"core": d["dla_core"], "gpu_fallback": d["gpu_fallback"]},
            "hardware_compatibility": d["hardware_compatibility"],
            "version_compatible": d["version_compatible"],
        }


_DEFAULTS = TargetProfile(name="defaults")


def target_dirs() -> list[Path]:
    """Folders searched for built-in profiles: the package's own, then the current directory's."""
    from importlib.resources import files

    packaged = Path(str(files("snnet_export.engine_build") / "target_profiles"))
    dirs = [packaged, Path.cwd() / "engines" / "targets"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def _builtin_paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in target_dirs():
        for path in sorted(d.glob("*.y*ml")):
            found.setdefault(path.stem, path)
    return found


def list_targets() -> list[TargetProfile]:
    """Every built-in profile, sorted by name."""
    return [target_from_yaml(p) for _, p in sorted(_builtin_paths().items())]


def load_target(name_or_path: str | Path | TargetProfile) -> TargetProfile:
    """Return a built-in profile by name, or parse a YAML profile from a path.

    Raises:
        TargetError: unknown name, missing file, invalid YAML or an invalid profile.
    """
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    key = str(name_or_path)
    builtins = _builtin_paths()
    if key in builtins:
        return target_from_yaml(builtins[key])
    path = Path(key)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return target_from_yaml(path)
    known = ", ".join(sorted(builtins)) or "(none found)"
    raise TargetError(f"unknown target '{key}': expected one of {known} or a path to a YAML target profile")


def target_from_yaml(path: str | Path) -> TargetProfile:
    """Parse and validate one YAML target profile."""
    from ..fileio import read_yaml

    path = Path(path)
    data = read_yaml(path, "target profile", TargetError)
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    return target_from_dict(data, source=str(path))


def _section(f: Fields, data: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
    sec = data.get(key) or {}
    if not isinstance(sec, Mapping):
        f.fail(key, f"must be a mapping with keys {sorted(allowed)}")
    f.keys(sec, allowed, key)
    return sec


def target_from_dict(data: Any, source: str = "target profile") -> TargetProfile:
    """Validate plain data (parsed YAML) into a :class:`TargetProfile`."""
    f = Fields(source, TargetError)
    if not isinstance(data, Mapping):
        f.fail("", f"expected a mapping of target settings, got {type(data).__name__}")
    f.keys(data, _TOP_KEYS)
    name = str(data.get("name", ""))
    if not _NAME.match(name):
        f.fail("name", f"must be lower-case letters, digits, '.', '_' or '-' (it names a folder), got {name!r}")
    d = _DEFAULTS
    batch = _section(f, data, "batch", {"min", "opt", "max"})
    dla = _section(f, data, "dla", {"core", "gpu_fallback"})
    workspace = data.get("workspace_mib", d.workspace_mib)
    version = str(data.get("min_tensorrt", d.min_tensorrt))
    if not _VERSION.match(version):
        f.fail("min_tensorrt", f"must be a version like '10.3', got {version!r}")
    jetpack = data.get("jetpack")
    profile = TargetProfile(
        name=name,
        description=str(data.get("description", "")),
        platform=f.choice(data.get("platform", d.platform), PLATFORMS, "platform"),
        jetpack=None if jetpack is None else str(jetpack),
        min_tensorrt=version,
        max_opset=f.int(data.get("max_opset", d.max_opset), "max_opset", 7),
        batch_min=f.int(batch.get("min", d.batch_min), "batch.min", 1),
        batch_opt=f.int(batch.get("opt", d.batch_opt), "batch.opt", 1),
        batch_max=f.int(batch.get("max", d.batch_max), "batch.max", 1),
        workspace_mib=None if workspace is None else f.int(workspace, "workspace_mib (MiB)", 1),
        optimization_level=f.int(data.get("optimization_level", d.optimization_level), "optimization_level", 0, 5),
        dla_core=None if dla.get("core") is None else f.int(dla["core"], "dla.core", 0),
        gpu_fallback=f.bool(dla.get("gpu_fallback", d.gpu_fallback), "dla.gpu_fallback"),
        hardware_compatibility=f.choice(data.get("hardware_compatibility", d.hardware_compatibility),
                                        HARDWARE_COMPATIBILITY, "hardware_compatibility"),
        version_compatible=f.bool(data.get("version_compatible", d.version_compatible), "version_compatible"),
        source=source,
    )
    _check_consistency(profile, source)
    return profile


def _check_consistency(p: TargetProfile, source: str) -> None:
    if not p.batch_min <= p.batch_opt <= p.batch_max:
        raise TargetError(f"{source}: batch must satisfy min <= opt <= max, got "
                          f"min={p.batch_min} opt={p.batch_opt} max={p.batch_max}")
    if p.uses_dla:
        if p.platform != "jetson":
            raise TargetError(f"{source}: dla.core is set but platform is '{p.platform}': DLA cores exist only "
                              "on Jetson (Orin); set dla.core to null or platform to jetson")
        if p.batch_min != p.batch_max:
            raise TargetError(f"{source}: DLA runs static shapes only; set batch min = opt = max "
                              f"(got {p.batch_min}/{p.batch_opt}/{p.batch_max}) or set dla.core to null")
        if p.hardware_compatibility != "none":
            raise TargetError(f"{source}: hardware_compatibility '{p.hardware_compatibility}' is for GPU "
                              "engines and cannot be combined with DLA; set it to none")
