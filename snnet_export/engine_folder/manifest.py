"""The engine-folder manifest (``engines/NAME/manifest.json``): one schema every step reads.

Export writes it; ``build``, the runtime selector, ``bench`` and ``report`` read only this file and
the files it names. It must stay importable without torch (the runtime reads it).

Schema (``schema_version`` 1)::

    {
      "schema": "snnet-export/manifest", "schema_version": 1,
      "snnet_export_version": "0.1.0", "created": "2026-11-21T14:00:00Z",
      "family": {...FamilySpec.to_dict()...},
      "precision": "fp32" | "fp16", "opset": 18, "batch_max": 64,
      "io_dtype": "float32",                      # dtype of every graph's input and output
      "input_shape": [3, 224, 224],               # per image; the graph input is [batch, *input_shape]
      "num_classes": 1000,
      "checkpoint": {"path": "...", "sha256": "..."} | {"path": "random", "seed": 0},
      "weights": {
        "file": "weights.fp32.bin", "size": 473..., "sha256": "...", "alignment": 65536,
        "tensors": [{"offset": 0, "length": 1536, "dtype": "float32", "shape": [384], "sha256": "..."}, ...]
      },
      "configs": [{
        "id": 3, "path": "Ti[0..0] -> S[0..11]", "front": "Ti", "end": "S",
        "position": [0, 0] | null, "stitch_layer": [0, 0] | [S, 0, 0] | null, "stage": int | null,
        "flops": 4696010496, "params": 22345960,
        "accuracy": {"acc1": 79.0, "acc5": 94.1, "loss": 0.9} | null,
        "onnx": "stitch_003.onnx", "onnx_sha256": "...",
        "inputs": [{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": ["batch", 1000], "dtype": "float32"}],
        "verified": {"max_abs_diff": 1e-6, "rel_diff": 1e-7, "batches": [1, 3], "top1_agree": 1.0}
      }, ...],
      "engines": {"<target>": {...written by `snnet-export build`, see snnet_export/engine_build/...}}
    }
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VerifyError
from ..fileio import read_json

SCHEMA = "snnet-export/manifest"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and schema-check ``folder/manifest.json``; raise :class:`VerifyError` if unusable.

    The one door to a manifest: types, ranges, unique ids and path containment are checked here
    (:func:`.schema.check_manifest`), so readers trust what it returns.
    """
    from .schema import check_manifest

    path = manifest_path(folder)
    if not path.is_file():
        raise VerifyError(f"{folder} is not an engine folder: {MANIFEST} is missing "
                          "(create one with `snnet-export export`)")
    data = read_json(path, "", VerifyError, "restore it or re-export the folder")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerifyError(f"{path} is not an snnet-export manifest")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise VerifyError(f"{path} has schema version {data.get('schema_version')!r:.40}; this snnet-export "
                          f"reads version {SCHEMA_VERSION}: re-export the folder")
    return check_manifest(data, folder, str(path))


def save_manifest(folder: str | Path, data: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    from ..fileio import write_json_atomic

    write_json_atomic(manifest_path(folder), data)


def config_entry(manifest: dict[str, Any], cfg_id: int) -> dict[str, Any]:
    entry: dict[str, Any]
    for entry in manifest["configs"]:
        if entry["id"] == cfg_id:
            return entry
    raise KeyError(cfg_id)
