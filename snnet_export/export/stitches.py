"""Export every stitch of a trained SN-Net to ONNX, with the weights stored once.

``export_stitches`` traces each selected configuration into its own graph (dynamic batch), moves
every initializer into the folder's one content-addressed weight file, verifies the saved stitch in
ONNX Runtime against PyTorch, and commits it to ``manifest.json``. Re-running resumes: stitches
already exported and verified are skipped; every file is written atomically.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import onnx

from .. import __version__
from ..errors import ExportError, SNNetExportError, first_line
from ..model.family import FamilySpec, get_family
from ..model.flops import count_flops, count_params
from ..fileio import check_writable, sha256_bytes, sha256_file, write_bytes_atomic
from ..engine_folder.lock import folder_lock
from ..engine_folder.manifest import SCHEMA, SCHEMA_VERSION, load_manifest, manifest_path, save_manifest
from ..model.snnet import SNNet, load_checkpoint, snnet_from_family
from ..selection import select_ids
from .trace import DEFAULT_OPSET, onnx_from_stitch
from .weight_store import WeightStore, weight_file_name

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")


def _io_spec(values: Sequence[onnx.ValueInfoProto]) -> list[dict[str, Any]]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tt.shape.dim]
        out.append({"name": v.name, "shape": shape,
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name})
    return out


def _checkpoint_identity(checkpoint: str | Path, seed: int) -> dict[str, Any]:
    if str(checkpoint) == "random":
        return {"path": "random", "seed": seed}
    path = Path(checkpoint)
    return {"path": str(path), "sha256": sha256_file(path)}


def _open_folder(out: Path, header: dict[str, Any], force: bool) -> dict[str, Any]:
    """Return the manifest to extend: the existing one when it matches ``header``, else a new one."""
    keys = ("family", "precision", "opset", "checkpoint", "batch_max", "exporter")
    if manifest_path(out).exists():
        old = load_manifest(out)
        differs = [k for k in keys if old.get(k) != header[k]]
        if not differs:
            return old
        if not force:
            raise ExportError(f"{out} holds a different export ({', '.join(differs)} differ: "
                              f"{old['family']['name']}/{old['precision']} there); pass --force to "
                              "replace it or choose another -o folder")
        _remove_export(out, old)
    elif out.exists() and any(not _ours(p) for p in out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not an engine folder; choose an empty or new folder "
                          "(or pass --force to export into it anyway)")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**header, "weights": {"file": header["weights_file"], "size": 0, "sha256": None,
                                      "alignment": 65536, "tensors": []}, "configs": [], "engines": {}}
    manifest.pop("weights_file")
    # written before the first stitch: an interruption anywhere leaves a folder the same command resumes
    save_manifest(out, manifest)
    return manifest


def _ours(path: Path) -> bool:
    """Files an unfinished export may leave before its manifest: the lock, temp files, an empty weight file."""
    from ..engine_folder.lock import LOCK_FILE

    name = path.name
    return (name == LOCK_FILE or (name.startswith(".") and name.endswith(".tmp"))
            or (name.startswith("weights.") and name.endswith(".bin") and path.is_file()
                and path.stat().st_size == 0))


def _remove_export(out: Path, old: dict[str, Any]) -> None:
    """Delete the files an earlier export owns (never anything else in the folder)."""
    import shutil

    for entry in old.get("configs", []):
        (out / entry["onnx"]).unlink(missing_ok=True)
    (out / old["weights"]["file"]).unlink(missing_ok=True)
    shutil.rmtree(out / "trt", ignore_errors=True)
    manifest_path(out).unlink(missing_ok=True)


def _done(out: Path, entry: dict[str, Any] | None, bad: set[int]) -> bool:
    """A stitch is reused only when verified, its graph file matches and all its tensors re-hash."""
    if not entry or not (entry.get("verified") or {}).get("ok"):
        return False
    if any(index in bad for _, index in entry["initializers"]):
        return False
    path = out / entry["onnx"]
    return path.is_file() and sha256_file(path) == entry["onnx_sha256"]


def export_stitches(
    family: str | FamilySpec, checkpoint: str | Path, out: str | Path, precision: str = "fp32",
    opset: int = DEFAULT_OPSET, configs: str | Sequence[int] | None = None, batch_max: int = 64,
    accuracy: str | Path | None = None, force: bool = False, verify: bool = True, seed: int = 0,
    progress: bool = True, exporter: str = "torchscript", from_folder: str | Path | None = None,
) -> dict[str, Any]:
    """Export the selected stitches of ``family`` into the engine folder ``out``.

    Args:
        family: registered name, YAML path or spec.
        checkpoint: a trained SN-Net checkpoint (published layout) or ``"random"``.
        out: the engine folder (created; resumed if it holds the same export).
        precision: ``fp32`` or ``fp16`` (FP16 weights and compute, FP32 inputs/outputs).
        configs: ids (``"0,3,10-20"`` or a list); ``None`` exports every configuration.
        batch_max: largest batch the engines are meant for (recorded; verified with batch 1 and 3).
        accuracy: a results JSONL (``snnet-export eval`` or published) to record per stitch.
        verify: check each stitch in ONNX Runtime against PyTorch (failures summarised at the end).
        exporter: ``torchscript`` (default, fast) or ``dynamo`` (see :func:`onnx_from_stitch`).
        from_folder: an FP32 export of the same family and checkpoint whose graphs are reused
            instead of tracing again (e.g. to make the FP16 folder); still verified vs PyTorch.

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        ExportError: the folder holds another export, or stitches failed verification.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    spec = get_family(family)
    snnet = snnet_from_family(spec, seed=seed)
    if str(checkpoint) != "random":
        load_checkpoint(snnet, checkpoint)
    ids = select_ids(configs, len(snnet.configs), where=f"family {spec.name}")
    acc = _accuracy_table(accuracy)
    out = Path(out)
    check_writable(out, "output folder", ExportError, folder=True)
    header = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "snnet_export_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "family": spec.to_dict(), "precision": precision, "opset": opset, "batch_max": batch_max,
        "io_dtype": "float32", "input_shape": list(snnet.input_size), "num_classes": snnet.num_classes,
        "exporter": exporter,
        "checkpoint": _checkpoint_identity(checkpoint, seed), "weights_file": weight_file_name(precision),
    }
    with folder_lock(out, "export"):
        return _export_locked(snnet, spec, ids, out, header, force, acc, opset, precision, exporter,
                              from_folder, verify, progress)


def _export_locked(snnet: SNNet, spec: FamilySpec, ids: list[int], out: Path, header: dict[str, Any],
                   force: bool, acc: dict[int, dict[str, float | None]], opset: int, precision: str, exporter: str,
                   from_folder: str | Path | None, verify: bool, progress: bool) -> dict[str, Any]:
    """The part of :func:`export_stitches` that writes ``out`` (under its folder lock)."""
    manifest = _open_folder(out, header, force)
    entries = {e["id"]: e for e in manifest["configs"]}
    meta = snnet_from_family(spec, device="meta")
    source = _source_graphs(from_folder, header) if from_folder else None
    failures: list[str] = []
    from ..progress import progress_bar

    with WeightStore(out / manifest["weights"]["file"], manifest["weights"]["tensors"]) as store:
        if store.tensors and store.revalidate():
            log.warning("%d recorded tensors of %s fail their SHA-256; stitches using them are exported "
                        "again and the bytes rewritten", len(store.bad), store.path)
        bar = progress_bar(ids, desc=f"export {precision}", unit="stitch", disable=not progress)
        for cfg_id in bar:
            if _done(out, entries.get(cfg_id), store.bad):
                log.debug("stitch %d already exported and verified; skipping", cfg_id)
                continue
            t0 = time.perf_counter()
            entry = _export_one(snnet, meta, cfg_id, out, store, opset, precision, acc, exporter, source)
            store.flush()
            t1 = time.perf_counter()
            if verify:
                entry["verified"] = _verify_entry(snnet, out, entry, manifest, store, precision)
                if not entry["verified"]["ok"]:
                    failures.append(f"stitch {cfg_id}: max abs diff {entry['verified']['max_abs_diff']:.3g} "
                                    f"(limit {entry['verified']['limit']:.3g}), top-1 agreement "
                                    f"{entry['verified']['top1_agree']:.2f}")
            entry["seconds"] = {**entry.pop("seconds"), "verify": round(time.perf_counter() - t1, 3)}
            entry["export_seconds"] = round(time.perf_counter() - t0, 2)
            entries[cfg_id] = entry
            _commit(out, manifest, entries, store)
            bar.set_postfix_str(f"id {cfg_id} {entry['export_seconds']:.1f}s")
        if store.bad:
            log.warning("%d tensors of %s still fail their SHA-256 (used only by stitches not selected "
                        "this run): re-run export without --configs to repair them", len(store.bad), store.path)
    manifest["weights"]["sha256"] = sha256_file(out / manifest["weights"]["file"])
    save_manifest(out, manifest)
    if failures:
        raise ExportError(f"{len(failures)} of {len(ids)} stitches failed verification against "
                          "PyTorch (kept in the folder, marked unverified): " + "; ".join(failures))
    return manifest


def _accuracy_table(accuracy: str | Path | None) -> dict[int, dict[str, float | None]]:
    if accuracy is None:
        return {}
    from ..train.evaluate import load_accuracy_table

    return load_accuracy_table(accuracy)


def _export_one(snnet: SNNet, meta: SNNet, cfg_id: int, out: Path, store: WeightStore, opset: int,
                precision: str, acc: dict[int, dict[str, float | None]], exporter: str,
                source: dict[int, Path] | None = None) -> dict[str, Any]:
    cfg = snnet.config(cfg_id)
    t0 = time.perf_counter()
    try:
        if source is not None:
            model = _graph_from_source(source, cfg_id, precision)
        else:
            model = onnx_from_stitch(snnet, cfg_id, opset, precision, exporter)
    except SNNetExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        raise ExportError(f"stitch {cfg_id} ({snnet.describe(cfg)}) could not be exported to ONNX "
                          f"opset {opset}: {first_line(exc)}") from exc
    t1 = time.perf_counter()
    initializers = store.externalize(model)
    data = model.SerializeToString()
    name = f"stitch_{cfg_id:03d}.onnx"
    write_bytes_atomic(out / name, data)
    t2 = time.perf_counter()
    mcfg = meta.config(cfg_id)
    return {
        "id": cfg_id, "path": snnet.describe(cfg), "front": snnet.anchor_names[cfg.front],
        "end": snnet.anchor_names[cfg.end], "position": list(cfg.position) if cfg.position else None,
        "stitch_layer": list(cfg.stitch_layer) if cfg.stitch_layer else None, "stage": cfg.stage,
        "flops": count_flops(meta, mcfg), "params": count_params(meta, mcfg),
        "accuracy": acc.get(cfg_id), "onnx": name, "onnx_sha256": sha256_bytes(data),
        "onnx_bytes": len(data), "inputs": _io_spec(model.graph.input),
        "outputs": _io_spec(model.graph.output), "initializers": initializers,
        "seconds": {"trace": round(t1 - t0, 3), "store": round(t2 - t1, 3)},
    }


def _source_graphs(folder: str | Path, header: dict[str, Any]) -> dict[int, Path]:
    """Verified FP32 graphs of an earlier export of the same family, checkpoint and opset."""
    folder = Path(folder)
    src = load_manifest(folder)
    differs = [k for k in ("family", "checkpoint", "opset", "exporter") if src.get(k) != header[k]]
    if src.get("precision") != "fp32" or differs:
        raise ExportError(f"--from {folder} must be an FP32 export of the same family, checkpoint, opset "
                          f"and exporter (differs: {', '.join(differs) or 'precision'})")
    return {e["id"]: folder / e["onnx"] for e in src["configs"] if e.get("verified", {}).get("ok")}


def _graph_from_source(source: dict[int, Path], cfg_id: int, precision: str) -> onnx.ModelProto:
    if cfg_id not in source:
        raise ExportError(f"stitch {cfg_id} is not a verified stitch of the --from folder: export it there first")
    model = onnx.load(str(source[cfg_id]))  # external data read back from the source's weight file
    if precision == "fp16":
        from .fp16 import fp16_from_fp32

        model = fp16_from_fp32(model)
    return model


def _verify_entry(snnet: SNNet, out: Path, entry: dict[str, Any], manifest: dict[str, Any],
                  store: WeightStore, precision: str) -> dict[str, Any]:
    from ..engine_folder.weight_file import WeightFile
    from .verify import verify_stitch

    weights = {**manifest["weights"], "size": store.size, "tensors": store.tensors}
    # the store hashed these bytes as it wrote them; `snnet-export verify` re-hashes the file
    return verify_stitch(snnet, out, entry, WeightFile(out, weights, verify=False), precision)


def _commit(out: Path, manifest: dict[str, Any], entries: dict[int, dict[str, Any]],
            store: WeightStore) -> None:
    """Record the weight table and entries: the manifest is the commit point of each stitch."""
    manifest["weights"].update(size=store.size, tensors=store.tensors, sha256=None)
    manifest["configs"] = [entries[i] for i in sorted(entries)]
    save_manifest(out, manifest)
    store.commit()
