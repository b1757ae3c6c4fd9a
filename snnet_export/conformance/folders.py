"""Synthetic engine folders for conformance traces: a manifest and profiles from a family's stitch table.

The stitch tables (``tables/*.tsv``, copies of the official SN-Net release tables in ``tests/data``)
give each stitch's FLOPs and Top-1; the synthetic profile makes throughput inversely proportional
to FLOPs (with seeded noise, optional exact ties and quantised speeds), so frontiers look like real
ones. No ONNX or weight bytes are written: the selector reads only the manifest and the profile.
Nothing here is a measurement.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..engine_folder.manifest import SCHEMA, SCHEMA_VERSION
from ..engine_folder.profile import PROFILE_SCHEMA, PROFILE_VERSION

#: family name -> table file shipped in this package
FAMILIES = ("deit_tsb", "levit", "resnet", "resnet_swin", "swin_tsb")
_SHA = "0" * 64
TARGETS = ("dgpu", "jetson-orin")


@dataclass(frozen=True)
class TableRow:
    """One stitch of a family's official table."""

    id: int
    path: str
    flops: int
    top1: float


def family_table(family: str) -> list[TableRow]:
    """The stitch table of ``family`` (one of :data:`FAMILIES`)."""
    text = resources.files(__package__).joinpath("tables", f"{family}.tsv").read_text()
    rows = []
    for rec in csv.DictReader(text.splitlines(), delimiter="\t"):
        flops = rec.get("FLOPs_fvcore")
        value = int(flops) if flops and flops != "-" else round(float(rec["GFLOPs_fvcore"]) * 1e9)
        rows.append(TableRow(int(rec["cfg_id"]), rec["path"], value, float(rec["Top1"])))
    return rows


def make_manifest(family: str, rows: list[TableRow], rng: random.Random, unknown: float = 0.0,
                  targets: tuple[str, ...] = ()) -> dict[str, Any]:
    """A schema-valid manifest for ``rows``; a fraction ``unknown`` of stitches has no accuracy."""
    configs = []
    for r in rows:
        acc = None if rng.random() < unknown else {"acc1": r.top1, "acc5": None}
        configs.append({"id": r.id, "path": r.path, "flops": r.flops, "params": 1000 + r.id,
                        "accuracy": acc, "onnx": f"stitch_{r.id:03d}.onnx", "onnx_sha256": _SHA,
                        "initializers": [["w", 0]],
                        "outputs": [{"name": "logits", "shape": ["batch", 1000], "dtype": "float32"}]})
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "family": {"name": family},
        "precision": "fp16", "batch_max": 64, "input_shape": [3, 224, 224], "num_classes": 1000,
        "weights": {"file": "weights.fp16.bin", "size": 4096, "sha256": _SHA,
                    "tensors": [{"offset": 0, "length": 2048, "dtype": "float16", "shape": [1024],
                                 "sha256": _SHA}]},
        "configs": configs}
    if targets:
        manifest["engines"] = {t: {"stitches": [_engine_record(t, r.id) for r in rows if rng.random() < 0.9]}
                               for t in targets}
    return manifest


def _engine_record(target: str, cfg_id: int) -> dict[str, Any]:
    """A complete engine record (what ``snnet-export build`` writes) for a plan that is not built here."""
    return {"id": cfg_id, "file": f"trt/{target}/stitch_{cfg_id:03d}.engine", "onnx": f"stitch_{cfg_id:03d}.onnx",
            "onnx_sha256": _SHA, "weights_sha256": _SHA, "sha256": _SHA, "size": 1 << 20,
            "tensorrt_version": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"},
            "flags": ["FP16"], "stripped": False, "hardware_compatibility": "none", "version_compatible": False,
            "dla_core": None, "builder": {"optimization_level": 3, "workspace_mib": 1024},
            "profile": {"input": "input", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224],
                        "max": [64, 3, 224, 224]}, "build_seconds": 1.0, "built": "2026-01-01T00:00:00Z"}


def _tie_groups(stitches: list[dict[str, Any]], rng: random.Random) -> None:
    """Mark runs of stitches neighbouring in speed as tie groups (what ``bench`` writes when CIs overlap)."""
    for b in sorted({r["batch"] for r in stitches}):
        recs = sorted((r for r in stitches if r["batch"] == b), key=lambda r: r["throughput"])
        k = 0
        while k < len(recs):
            size = rng.choice([1, 1, 2, 3])
            group = recs[k:k + size]
            for r in group:
                r["tie_group"] = sorted(g["id"] for g in group)
                r["resolved"] = rng.random() < 0.8
                p50 = r["latency_ms"]["p50"]
                r["latency_ms"]["p50_ci"] = [p50 * 0.97, p50 * 1.03]
            k += size


def make_profile(rows: list[TableRow], rng: random.Random, batches: list[int], backend: str = "ort",
                 target: str | None = None, ties: int = 0, quantise: bool = False,
                 unmeasured: float = 0.04) -> dict[str, Any]:
    """A synthetic profile: images/s ~ 1 / GFLOPs, growing with batch; ``ties`` stitches copy another's speed."""
    base = rng.uniform(200.0, 3000.0)
    speed = {r.id: base / (r.flops / 1e9) * rng.lognormvariate(0.0, 0.08) for r in rows}
    ids = [r.id for r in rows]
    for _ in range(ties):
        a, b = rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
        speed[a] = speed[b]
    if quantise:
        speed = {i: float(round(s, -1) or 10.0) for i, s in speed.items()}
    stitches = []
    for r in rows:
        if rng.random() < unmeasured:
            continue  # a stitch the profile did not measure
        for b in batches:
            thr = speed[r.id] * b ** rng.uniform(0.3, 0.9) if b > 1 else speed[r.id]
            p50 = 1000.0 * b / thr
            tail90, tail99 = rng.uniform(1.0, 1.4), rng.uniform(1.4, 2.5)
            stitches.append({"id": r.id, "batch": b, "throughput": thr, "runs": 20,
                             "latency_ms": {"mean": p50 * 1.05, "p50": p50, "p90": p50 * tail90,
                                            "p99": p50 * tail99}})
    if not stitches:
        b = batches[0]
        stitches.append({"id": rows[0].id, "batch": b, "throughput": speed[rows[0].id],
                         "latency_ms": {"p50": 1000.0 * b / speed[rows[0].id], "p90": 1.0e3, "p99": 2.0e3}})
    if rng.random() < 0.4:
        _tie_groups(stitches, rng)
    if rng.random() < 0.3:
        rng.shuffle(stitches)  # record order decides ties between equally near batches
    prof: dict[str, Any] = {"schema": PROFILE_SCHEMA, "version": PROFILE_VERSION, "device": "synthetic",
                            "backend": backend, "precision": "fp16", "environment": {}, "batches": batches,
                            "stitches": stitches}
    if target:
        prof["target"] = target
    else:
        prof["ort_mode"] = "shared"
    return prof


def write_folder(out: str | Path, family: str = "deit_tsb", seed: int = 0, batches: tuple[int, ...] = (1, 8)) -> Path:
    """Write a synthetic engine folder (``manifest.json`` + ``profile.synthetic.json``) of every stitch of ``family``.

    For the native example, benchmark and fuzzer: the selector reads only these two files (no
    ONNX or weights are written). Profiles are synthetic, never a measurement.
    """
    import json

    from ..errors import SelectorError
    from ..fileio import check_writable

    if family not in FAMILIES:
        raise SelectorError(f"unknown family '{family}': expected one of {', '.join(FAMILIES)}")
    out = Path(out)
    check_writable(out, "folder", SelectorError, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"folder:{family}:{seed}")
    rows = family_table(family)
    (out / "manifest.json").write_text(json.dumps(make_manifest(family, rows, rng), indent=1))
    (out / "profile.synthetic.json").write_text(json.dumps(make_profile(rows, rng, list(batches), unmeasured=0.0), indent=1))
    return out
