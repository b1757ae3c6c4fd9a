"""Anchor families: the named registry and the YAML family-spec format.

A family is a list of anchors (timm models of one architecture at growing scale) plus how they are
stitched. The spec is pure data; :func:`anchors_from_family` turns it into timm modules.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import FamilyError

log = logging.getLogger(__name__)

STITCH_KINDS = ("linear", "conv1x1")
HEAD_MODES = ("v1", "v2")


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor: a timm model name, its kwargs, and where its weights come from."""

    name: str
    model: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    pretrained: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model, "kwargs": dict(self.kwargs)}
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        if self.pretrained:
            out["pretrained"] = True
        return out


@dataclass(frozen=True)
class FamilySpec:
    """An SN-Net family: anchors ordered small to large and the stitching settings.

    Attributes:
        kernel_size, stride: the sliding window over block indices that yields positions.
        nearest: stitch only neighbouring anchors (Ti->S, S->B), as published.
        stitch_kind: ``linear`` (tokens of ViTs) or ``conv1x1`` (CNN feature maps).
        head: ``v1`` skips the end anchor's final norm on stitched configs (published);
            ``v2`` applies it.
    """

    name: str
    anchors: tuple[AnchorSpec, ...]
    kernel_size: int = 2
    stride: int = 1
    nearest: bool = True
    stitch_kind: str = "linear"
    head: str = "v1"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what the YAML format and the manifest hold)."""
        return {
            "name": self.name,
            "description": self.description,
            "anchors": [a.to_dict() for a in self.anchors],
            "stitching": {
                "kernel_size": self.kernel_size,
                "stride": self.stride,
                "nearest": self.nearest,
                "layer": self.stitch_kind,
            },
            "head": self.head,
        }


def _vit(name: str, width: int, heads: int, **extra: Any) -> AnchorSpec:
    kwargs = dict(embed_dim=width, depth=12, num_heads=heads, **extra)
    return AnchorSpec(name=name, model="vit_tiny_patch16_224", kwargs=kwargs)


_REGISTRY: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Add ``spec`` to the registry under its name (last registration wins)."""
    _REGISTRY[spec.name] = spec
    return spec


register_family(FamilySpec(
    name="deit-tsb",
    description="DeiT-Ti/S/B (timm), ImageNet-1k, 224x224: the published SN-Net",
    anchors=(
        AnchorSpec("Ti", "deit_tiny_patch16_224"),
        AnchorSpec("S", "deit_small_patch16_224"),
        AnchorSpec("B", "deit_base_patch16_224"),
    ),
))
_TINY = dict(img_size=32, patch_size=8, num_classes=10)
register_family(FamilySpec(
    name="tiny",
    description="Tiny ViTs for tests: depth 12, widths 24/48/96, 32x32 RGB input, 10 classes",
    anchors=(_vit("T", 24, 2, **_TINY), _vit("S", 48, 4, **_TINY), _vit("B", 96, 8, **_TINY)),
))
_DIGITS = dict(img_size=16, patch_size=4, in_chans=1, num_classes=10, mlp_ratio=2.0)
register_family(FamilySpec(
    name="digits",
    description="Demo family for scikit-learn's 8x8 digits (upsampled to 16x16, 1 channel): "
    "depth 12, widths 32/64/128, 10 classes",
    anchors=(_vit("T", 32, 2, **_DIGITS), _vit("S", 64, 4, **_DIGITS), _vit("B", 128, 8, **_DIGITS)),
))

DEMO_FAMILY = "digits"


def list_families() -> list[FamilySpec]:
    """The registered families, in registration order."""
    return list(_REGISTRY.values())


def get_family(name_or_path: str | Path | FamilySpec) -> FamilySpec:
    """Return a registered family by name, or parse a YAML family spec from a path."""
    if isinstance(name_or_path, FamilySpec):
        return name_or_path
    key = str(name_or_path)
    if key in _REGISTRY:
        return _REGISTRY[key]
    path = Path(key)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return family_from_yaml(path)
    known = ", ".join(sorted(_REGISTRY))
    raise FamilyError(f"unknown family '{key}': expected one of {known} or a path to a YAML family spec")


def family_from_yaml(path: str | Path) -> FamilySpec:
    """Parse and validate a YAML family spec (format documented in the README)."""
    from ..fileio import read_yaml

    return family_from_dict(read_yaml(path, "family spec", FamilyError), source=str(path))


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise FamilyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _anchor_from_dict(item: Any, i: int, source: str) -> AnchorSpec:
    where = f"{source}: anchors[{i}]"
    if not isinstance(item, Mapping) or "model" not in item:
        raise FamilyError(f"{where} must be a mapping with at least 'model' (a timm model name)")
    _check_keys(item, {"name", "model", "kwargs", "checkpoint", "pretrained"}, where)
    kwargs = item.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise FamilyError(f"{where}.kwargs must be a mapping of timm create_model arguments")
    return AnchorSpec(
        name=str(item.get("name", f"A{i}")), model=str(item["model"]), kwargs=dict(kwargs),
        checkpoint=str(item["checkpoint"]) if item.get("checkpoint") else None,
        pretrained=_strict_bool(item.get("pretrained", False), f"{where}.pretrained"),
    )


def family_from_dict(data: Any, source: str = "family spec") -> FamilySpec:
    """Validate plain data (parsed YAML or a manifest's ``family``) into a :class:`FamilySpec`."""
    if not isinstance(data, Mapping):
        raise FamilyError(f"{source}: expected a mapping with 'name' and 'anchors', got {type(data).__name__}")
    _check_keys(data, {"name", "description", "anchors", "stitching", "head"}, source)
    anchors = data.get("anchors")
    if not isinstance(anchors, list) or len(anchors) < 2:
        raise FamilyError(f"{source}: 'anchors' must list at least two anchors, small to large")
    for key in ("name", "description", "head"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise FamilyError(f"{source}: '{key}' must be a string, got {type(data[key]).__name__}")
    st = data.get("stitching") or {}
    if not isinstance(st, Mapping):
        raise FamilyError(f"{source}: 'stitching' must be a mapping")
    _check_keys(st, {"kernel_size", "stride", "nearest", "layer"}, f"{source}: stitching")
    spec = FamilySpec(
        name=str(data.get("name") or Path(source).stem),
        description=str(data.get("description", "")),
        anchors=tuple(_anchor_from_dict(a, i, source) for i, a in enumerate(anchors)),
        kernel_size=_positive_int(st.get("kernel_size", 2), f"{source}: stitching.kernel_size"),
        stride=_positive_int(st.get("stride", 1), f"{source}: stitching.stride"),
        nearest=_strict_bool(st.get("nearest", True), f"{source}: stitching.nearest"),
        stitch_kind=str(st.get("layer", "linear")),
        head=str(data.get("head", "v1")),
    )
    if spec.stitch_kind not in STITCH_KINDS:
        raise FamilyError(f"{source}: stitching.layer must be one of {STITCH_KINDS}, got '{spec.stitch_kind}'")
    if spec.head not in HEAD_MODES:
        raise FamilyError(f"{source}: head must be one of {HEAD_MODES}, got '{spec.head}'")
    names = [a.name for a in spec.anchors]
    if len(set(names)) != len(names):
        raise FamilyError(f"{source}: anchor names must be unique, got {names}")
    return spec


def _strict_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise FamilyError(f"{where} must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FamilyError(f"{where} must be a positive integer, got {value!r}")
    return value
