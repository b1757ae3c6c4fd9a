"""Integrity check of an engine folder on disk: manifest, weight file, graphs and their external data.

No torch here: ``snnet-export verify`` runs on the deploy side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VerifyError, first_line
from ..fileio import sha256_file
from .manifest import load_manifest
from .weight_file import WeightFile, check_location


def verify_folder(folder: str | Path, check_graphs: bool = True) -> dict[str, Any]:
    """Re-check an engine folder on disk; raise one :class:`VerifyError` listing every problem.

    Checks: the manifest; the weight file's size, SHA-256 and every tensor's SHA-256; per stitch
    the ONNX file's presence and SHA-256, the ONNX checker, and that every external-data reference
    is the folder's weight file at a recorded tensor's offset and length.
    """
    import onnx

    folder = Path(folder)
    manifest = load_manifest(folder)
    wmeta = manifest["weights"]
    problems: list[str] = []
    try:
        wf = WeightFile(folder, wmeta)
        problems += wf.verify_all()
        if wmeta.get("sha256") and sha256_file(wf.path) != wmeta["sha256"]:
            problems.append(f"{wf.path.name}: whole-file SHA-256 differs from the manifest")
    except VerifyError as exc:
        problems.append(str(exc))
    spans = {(t["offset"], t["length"]): list(t["shape"]) for t in wmeta["tensors"]}
    for entry in manifest["configs"]:
        problems += _check_entry(onnx, folder, entry, wmeta["file"], spans, check_graphs)
    if problems:
        raise VerifyError(f"{folder}: {len(problems)} problem(s): " + "; ".join(problems))
    return {"folder": str(folder), "stitches": len(manifest["configs"]),
            "tensors": len(wmeta["tensors"]), "weight_bytes": wmeta["size"]}


def _check_entry(onnx: Any, folder: Path, entry: dict[str, Any], weight_file: str,
                 spans: dict[tuple[int, int], list[int]], check_graphs: bool) -> list[str]:
    path = folder / entry["onnx"]
    tag = f"stitch {entry['id']} ({entry['onnx']})"
    if not path.is_file():
        return [f"{tag}: file missing"]
    problems = []
    if sha256_file(path) != entry["onnx_sha256"]:
        problems.append(f"{tag}: SHA-256 differs from the manifest")
    if not entry.get("verified", {}).get("ok"):
        problems.append(f"{tag}: not verified against PyTorch (re-run export)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf errors
        return problems + [f"{tag}: not a readable ONNX file: {first_line(exc)}"]
    bad_location = False
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    for name, info in graph_external_data(model):
        try:
            check_location(folder, info.get("location", ""), weight_file)
        except VerifyError as exc:
            problems.append(f"{tag}: initializer {name}: {exc}")
            bad_location = True
            continue
        span = (int(info.get("offset", 0)), int(info.get("length", -1)))
        if span not in spans:
            problems.append(f"{tag}: initializer {name} points to bytes no tensor owns")
        elif spans[span] != dims[name]:
            problems.append(f"{tag}: initializer {name} has shape {dims[name]} in the graph but "
                            f"{spans[span]} in the manifest's tensor table")
    if check_graphs and not bad_location:
        try:
            onnx.checker.check_model(str(path))  # path form: external data resolved in the folder
        except Exception as exc:  # noqa: BLE001 - checker errors
            problems.append(f"{tag}: ONNX checker: {first_line(exc)}")
    return problems


def graph_external_data(model: Any) -> list[tuple[str, dict[str, str]]]:
    """``[(initializer name, {location, offset, length}), ...]`` of a loaded ONNX model."""
    return [(init.name, {e.key: e.value for e in init.external_data})
            for init in model.graph.initializer if init.data_location == 1]  # TensorProto.EXTERNAL
