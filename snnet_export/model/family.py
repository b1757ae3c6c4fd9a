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
from ..fields import Fields

log = logging.getLogger(__name__)

STITCH_KINDS = ("linear", "conv1x1")
HEAD_MODES = ("v1", "v2")
# family kind -> the stitching layer it uses (``vit`` is the DeiT-style single-stage family)
KINDS = {"vit": "linear", "swin": "linear", "levit": "linear", "resnet": "conv1x1", "resnet-swin": "conv1x1"}


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor: a timm model name, its kwargs, and where its weights come from."""

    name: str
    model: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    pretrained: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model, "kwargs": _plain(dict(self.kwargs))}
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
            ``v2`` applies it (ViT families only; staged families always apply it).
        kind: ``vit`` (DeiT-style, one stage of equal depths) or a staged kind: ``swin``,
            ``resnet``, ``resnet-swin`` (ResNet front, Swin end) or ``levit``.
        stages: stitched stages of a staged family; ``None`` = the published default (Swin and
            LeViT: all but the last; ResNet kinds: all but the first and last).
        input_size: ``(C, H, W)``; needed only for all-ResNet families (default 3x224x224).
    """

    name: str
    anchors: tuple[AnchorSpec, ...]
    kernel_size: int = 2
    stride: int = 1
    nearest: bool = True
    stitch_kind: str = "linear"
    head: str = "v1"
    description: str = ""
    kind: str = "vit"
    stages: tuple[int, ...] | None = None
    input_size: tuple[int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what the YAML format and the manifest hold)."""
        out: dict[str, Any] = {
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
        if self.kind != "vit":
            out["kind"] = self.kind
        if self.stages is not None:
            out["stitching"]["stages"] = list(self.stages)
        if self.input_size is not None:
            out["input_size"] = list(self.input_size)
        return out


def _plain(value: Any) -> Any:
    """JSON-shaped copy (tuples -> lists) so a spec equals its manifest/YAML round trip."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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

# ---- staged families (SNNET_FAMILIES.md): Swin, ResNet, ResNet->Swin, LeViT -----------------
_SWIN = "swin_{}_patch4_window7_224"
register_family(FamilySpec(
    name="swin-tsb", kind="swin",
    description="Swin-Ti/S/B (timm), ImageNet-1k, 224x224: the published Swin SN-Net (41 stitches)",
    anchors=(AnchorSpec("Ti", _SWIN.format("tiny")), AnchorSpec("S", _SWIN.format("small")),
             AnchorSpec("B", _SWIN.format("base"))),
))
register_family(FamilySpec(
    name="resnet-18-50", kind="resnet", stitch_kind="conv1x1",
    description="ResNet-18/50 (timm), ImageNet-1k, 224x224: the published CNN SN-Net (10 stitches)",
    anchors=(AnchorSpec("R18", "resnet18"), AnchorSpec("R50", "resnet50")),
))
register_family(FamilySpec(
    name="resnet18-swin-ti", kind="resnet-swin", stitch_kind="conv1x1",
    description="ResNet-18 -> Swin-Ti (timm), ImageNet-1k, 224x224: the published CNN->ViT SN-Net (8 stitches)",
    anchors=(AnchorSpec("R18", "resnet18"), AnchorSpec("Swin-Ti", _SWIN.format("tiny"))),
))
register_family(FamilySpec(
    name="levit-192-256", kind="levit",
    description="LeViT-192/256 (timm, distilled heads averaged), ImageNet-1k, 224x224 (8 stitches)",
    anchors=(AnchorSpec("L192", "levit_192"), AnchorSpec("L256", "levit_256")),
))


def _swin(name: str, embed: int, depths: tuple[int, ...], **extra: Any) -> AnchorSpec:
    kwargs = dict(embed_dim=embed, depths=depths, num_heads=(1, 2, 4, 8), drop_path_rate=0.0, **extra)
    return AnchorSpec(name=name, model=_SWIN.format("tiny"), kwargs=kwargs)


def _resnet(name: str, model: str, **extra: Any) -> AnchorSpec:
    return AnchorSpec(name=name, model=model, kwargs=dict(channels=(8, 16, 32, 64), stem_width=8, **extra))


_TSWIN = dict(img_size=32, patch_size=2, window_size=4, num_classes=10)
register_family(FamilySpec(
    name="tiny-swin", kind="swin",
    description="Tiny Swins for tests: depths 2,2,2,2 / 2,2,6,2 / 2,2,6,2, embed 16/16/24, 32x32, 10 classes",
    anchors=(_swin("T", 16, (2, 2, 2, 2), **_TSWIN), _swin("S", 16, (2, 2, 6, 2), **_TSWIN),
             _swin("B", 24, (2, 2, 6, 2), **_TSWIN)),
))
register_family(FamilySpec(
    name="tiny-resnet", kind="resnet", stitch_kind="conv1x1", input_size=(3, 32, 32),
    description="Tiny ResNet-18/50 shapes for tests: widths 8-64 (x4 for the Bottleneck), 32x32, 10 classes",
    anchors=(_resnet("R18", "resnet18", num_classes=10), _resnet("R50", "resnet50", num_classes=10)),
))
register_family(FamilySpec(
    name="tiny-resnet-swin", kind="resnet-swin", stitch_kind="conv1x1",
    description="Tiny ResNet-18 -> Swin (depths 2,2,6,2, window 2) for tests, 32x32, 10 classes",
    anchors=(_resnet("R18", "resnet18", num_classes=10),
             _swin("Swin", 16, (2, 2, 6, 2), img_size=32, patch_size=4, window_size=2, num_classes=10)),
))
_DSWIN = dict(img_size=16, patch_size=2, window_size=4, in_chans=1, num_classes=10, mlp_ratio=2.0)
register_family(FamilySpec(
    name="digits-swin", kind="swin",
    description="Swin demo family for scikit-learn's digits (16x16, 1 channel): depths 2,2,2,2 / 2,2,6,2, "
    "embed 32/48, window 4, 10 classes",
    anchors=(_swin("T", 32, (2, 2, 2, 2), **_DSWIN), _swin("S", 48, (2, 2, 6, 2), **_DSWIN)),
))
_DCNN = dict(in_chans=1, num_classes=10)
register_family(FamilySpec(
    name="digits-cnn", kind="resnet", stitch_kind="conv1x1", input_size=(1, 32, 32),
    description="ResNet-18/50 shapes for scikit-learn's digits (32x32, 1 channel): widths 16-128 "
    "(x4 for the Bottleneck), 10 classes",
    anchors=(AnchorSpec("R18", "resnet18", dict(channels=(16, 32, 64, 128), stem_width=16, **_DCNN)),
             AnchorSpec("R50", "resnet50", dict(channels=(16, 32, 64, 128), stem_width=16, **_DCNN))),
))
_TLEVIT = dict(img_size=64, key_dim=8, depth=(4, 4, 4), num_classes=10)
register_family(FamilySpec(
    name="tiny-levit", kind="levit",
    description="Tiny LeViTs for tests: widths 16,24,32 / 24,32,48, depth 4,4,4, 64x64, 10 classes",
    anchors=(AnchorSpec("L1", "levit_192", dict(embed_dim=(16, 24, 32), num_heads=(2, 3, 4), **_TLEVIT)),
             AnchorSpec("L2", "levit_256", dict(embed_dim=(24, 32, 48), num_heads=(3, 4, 6), **_TLEVIT))),
))


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
    """Parse and validate a YAML family spec (format documented in docs/families.md)."""
    from ..fileio import read_yaml

    return family_from_dict(read_yaml(path, "family spec", FamilyError), source=str(path))


def _anchor_from_dict(f: Fields, item: Any, i: int) -> AnchorSpec:
    where = f"anchors[{i}]"
    if not isinstance(item, Mapping) or "model" not in item:
        f.fail(where, "must be a mapping with at least 'model' (a timm model name)")
    f.keys(item, {"name", "model", "kwargs", "checkpoint", "pretrained"}, where)
    kwargs = item.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        f.fail(f"{where}.kwargs", "must be a mapping of timm create_model arguments")
    return AnchorSpec(
        name=str(item.get("name", f"A{i}")), model=str(item["model"]), kwargs=dict(kwargs),
        checkpoint=str(item["checkpoint"]) if item.get("checkpoint") else None,
        pretrained=f.bool(item.get("pretrained", False), f"{where}.pretrained"),
    )


def family_from_dict(data: Any, source: str = "family spec") -> FamilySpec:
    """Validate plain data (parsed YAML or a manifest's ``family``) into a :class:`FamilySpec`."""
    f = Fields(source, FamilyError)
    if not isinstance(data, Mapping):
        f.fail("", f"expected a mapping with 'name' and 'anchors', got {type(data).__name__}")
    f.keys(data, {"name", "description", "anchors", "stitching", "head", "kind", "input_size"})
    kind = str(data.get("kind", "vit"))
    if kind not in KINDS:
        f.fail("kind", f"unknown kind '{kind}': expected one of {sorted(KINDS)}")
    anchors = data.get("anchors")
    if not isinstance(anchors, list) or len(anchors) < 2:
        f.fail("anchors", "must list at least two anchors, small to large")
    for key in ("name", "description", "head"):
        if data.get(key) is not None:
            f.str(data[key], key)
    st = data.get("stitching") or {}
    if not isinstance(st, Mapping):
        f.fail("stitching", "must be a mapping")
    f.keys(st, {"kernel_size", "stride", "nearest", "layer", "stages"}, "stitching")
    spec = FamilySpec(
        name=str(data.get("name") or Path(source).stem),
        description=str(data.get("description", "")),
        anchors=tuple(_anchor_from_dict(f, a, i) for i, a in enumerate(anchors)),
        kernel_size=f.int(st.get("kernel_size", 2), "stitching.kernel_size", 1),
        stride=f.int(st.get("stride", 1), "stitching.stride", 1),
        nearest=f.bool(st.get("nearest", True), "stitching.nearest"),
        stitch_kind=str(st.get("layer", KINDS[kind])),
        head=str(data.get("head", "v1")),
        kind=kind,
        stages=_int_list(f, st["stages"], "stitching.stages") if st.get("stages") is not None else None,
        input_size=_input_size(f, data.get("input_size")),
    )
    _check_choices(f, spec, kind)
    return spec


def _check_choices(f: Fields, spec: FamilySpec, kind: str) -> None:
    if spec.stitch_kind not in STITCH_KINDS:
        f.fail("stitching.layer", f"must be one of {STITCH_KINDS}, got '{spec.stitch_kind}'")
    if kind != "vit" and spec.stitch_kind != KINDS[kind]:
        f.fail("stitching.layer", f"a '{kind}' family is stitched with '{KINDS[kind]}' layers, "
                                  f"got '{spec.stitch_kind}'")
    if spec.head not in HEAD_MODES:
        f.fail("head", f"must be one of {HEAD_MODES}, got '{spec.head}'")
    names = [a.name for a in spec.anchors]
    if len(set(names)) != len(names):
        f.fail("anchors", f"anchor names must be unique, got {names}")


def _int_list(f: Fields, value: Any, where: str) -> tuple[int, ...]:
    """A non-empty list of stage indices (0-based), sorted and deduplicated."""
    if not f.list(value, where):
        f.fail(where, "must be a non-empty list of stage indices (0-based), got []")
    return tuple(sorted({f.int(v, f"{where}[{k}]", 0) for k, v in enumerate(value)}))


def _input_size(f: Fields, value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3:
        f.fail("input_size", f"must be [channels, height, width], got {value!r:.60}")
    c, h, w = (f.int(v, f"input_size[{k}]", 1) for k, v in enumerate(value))
    return (c, h, w)
