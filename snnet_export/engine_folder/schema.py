"""Load-time schema checks of the engine folder's files: manifest, profile and engine records.

The one place that decides whether a parsed ``manifest.json`` or ``profile.*.json`` can be
trusted; :func:`~.manifest.load_manifest` and :func:`~.profile.read_profile` call it, and every
later step reads the checked data without re-checking. Each failure is one line naming the file
and the field (``manifest.json: configs[3].onnx: ...``). Checked: types, ranges, finiteness,
unique ids, that every file the manifest names (graphs, weight file, engines) stays inside the
folder (no absolute path, ``..`` or symbolic link leading out), that tensor records fit the weight
file and their dtype/shape, and that every stitch has the same output shape. No torch here.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import VerifyError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8, "bfloat16": 2, "int64": 8, "int32": 4,
             "int8": 1, "uint8": 1, "bool": 1}


class _Check:
    """Field checks that raise one error naming ``file`` and the field path."""

    def __init__(self, file: str | Path, error: type[Exception]) -> None:
        self.file = Path(file).name if isinstance(file, Path) else str(file)
        self.error = error

    def fail(self, where: str, msg: str) -> None:
        raise self.error(f"{self.file}: {where}: {msg}")

    def get(self, obj: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            self.fail(f"{where}{key}", "missing")
        return obj[key]

    def dict(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {_kind(value)}")
        return value

    def list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {_kind(value)}")
        return value

    def str(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {_kind(value)}")
        return value

    def int(self, value: Any, where: str, lo: int = 0, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            self.fail(where, f"must be an integer {rng}, got {value!r:.60}")
        return value

    def num(self, value: Any, where: str, lo: float = 0.0, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < lo or (positive and value <= 0):
            self.fail(where, f"must be a finite number {'>' if positive else '>='} {lo}, got {value!r:.60}")
        return float(value)

    def bool(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"must be true or false, got {value!r:.60}")
        return value

    def sha(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _HEX64.match(value):
            self.fail(where, "must be a SHA-256 hex digest")
        return value

    def choice(self, value: Any, choices: tuple[Any, ...], where: str) -> Any:
        if value not in choices:
            self.fail(where, f"must be one of {list(choices)}, got {value!r:.60}")
        return value

    def unique_ids(self, items: list[Any], key: Callable[[Any], Any], where: str) -> None:
        seen: set[Any] = set()
        for item in items:
            k = key(item)
            if k in seen:
                self.fail(where, f"id {k} appears twice")
            seen.add(k)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def contained(folder: Path, rel: Any, where: str, check: _Check) -> Path:
    """``folder / rel`` when ``rel`` is a relative path that stays inside ``folder``, else fail.

    Refuses absolute paths, ``..``, backslashes and symbolic links anywhere on the way (a link
    could point a graph or engine at a file outside the folder).
    """
    rel = check.str(rel, where)
    parts = rel.split("/")
    if not rel or os.path.isabs(rel) or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        check.fail(where, f"'{rel[:80]}' must be a plain relative path inside the folder")
    path = folder
    for part in parts:
        path = path / part
        if path.is_symlink():
            check.fail(where, f"'{rel[:80]}' goes through a symbolic link; files of an engine folder "
                              "must be regular files inside it")
    return path


def check_manifest(data: Any, folder: str | Path, file: str = "manifest.json") -> dict[str, Any]:
    """Validate a parsed manifest (schema version already checked); returns it unchanged."""
    c = _Check(file, VerifyError)
    folder = Path(folder)
    data = c.dict(data, "manifest")
    c.dict(c.get(data, "family", ""), "family")
    c.choice(c.get(data, "precision", ""), ("fp32", "fp16"), "precision")
    c.int(data.get("batch_max", 1), "batch_max", 1)
    shape = c.list(c.get(data, "input_shape", ""), "input_shape")
    if len(shape) != 3:
        c.fail("input_shape", f"must be [channels, height, width], got {shape!r:.60}")
    for i, d in enumerate(shape):
        c.int(d, f"input_shape[{i}]", 1, 1 << 16)
    classes = c.int(c.get(data, "num_classes", ""), "num_classes", 1)
    size, n_tensors = _check_weights(c, folder, c.get(data, "weights", ""))
    configs = c.list(c.get(data, "configs", ""), "configs")
    for i, entry in enumerate(configs):
        _check_entry(c, folder, c.dict(entry, f"configs[{i}]"), f"configs[{i}]", n_tensors, classes)
    c.unique_ids(configs, lambda e: e["id"], "configs")
    engines = c.dict(data.get("engines") or {}, "engines")
    for target, rec in engines.items():
        _check_engines(c, folder, c.dict(rec, f"engines.{target}"), f"engines.{target}")
    return data


def _check_weights(c: _Check, folder: Path, weights: Any) -> tuple[int, int]:
    w = c.dict(weights, "weights")
    contained(folder, c.get(w, "file", "weights."), "weights.file", c)
    size = c.int(c.get(w, "size", "weights."), "weights.size")
    if w.get("sha256") is not None:
        c.sha(w["sha256"], "weights.sha256")
    tensors = c.list(c.get(w, "tensors", "weights."), "weights.tensors")
    for i, t in enumerate(tensors):
        where = f"weights.tensors[{i}]"
        t = c.dict(t, where)
        offset = c.int(c.get(t, "offset", where + "."), f"{where}.offset")
        length = c.int(c.get(t, "length", where + "."), f"{where}.length")
        dtype = c.choice(c.get(t, "dtype", where + "."), tuple(_ITEMSIZE), f"{where}.dtype")
        dims = c.list(c.get(t, "shape", where + "."), f"{where}.shape")
        count = 1
        for j, d in enumerate(dims):
            count *= c.int(d, f"{where}.shape[{j}]")
        if count * _ITEMSIZE[dtype] != length:
            c.fail(f"{where}.shape", f"{dims} of {dtype} is {count * _ITEMSIZE[dtype]} bytes, but length is {length}")
        if offset + length > size:
            c.fail(where, f"bytes {offset}..{offset + length} lie past the weight file's recorded size {size}")
        c.sha(c.get(t, "sha256", where + "."), f"{where}.sha256")
    return size, len(tensors)


def _check_entry(c: _Check, folder: Path, e: dict[str, Any], where: str, n_tensors: int, classes: int) -> None:
    c.int(c.get(e, "id", where + "."), f"{where}.id")
    c.str(c.get(e, "path", where + "."), f"{where}.path")
    contained(folder, c.get(e, "onnx", where + "."), f"{where}.onnx", c)
    c.sha(c.get(e, "onnx_sha256", where + "."), f"{where}.onnx_sha256")
    for key in ("flops", "params"):
        if key in e:
            c.num(e[key], f"{where}.{key}")
    inits = c.list(c.get(e, "initializers", where + "."), f"{where}.initializers")
    for j, pair in enumerate(inits):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            c.fail(f"{where}.initializers[{j}]", "must be [initializer name, tensor index]")
        c.int(pair[1], f"{where}.initializers[{j}][1]", 0, n_tensors - 1)
    acc = e.get("accuracy")
    if acc is not None:
        acc = c.dict(acc, f"{where}.accuracy")
        for key in ("acc1", "acc5"):
            if acc.get(key) is not None and c.num(acc[key], f"{where}.accuracy.{key}") > 100:
                c.fail(f"{where}.accuracy.{key}", f"is a percentage (0-100), got {acc[key]}")
        if acc.get("loss") is not None:
            c.num(acc["loss"], f"{where}.accuracy.loss")
    for j, out in enumerate(c.list(e.get("outputs", []), f"{where}.outputs")):
        dims = c.list(c.dict(out, f"{where}.outputs[{j}]").get("shape"), f"{where}.outputs[{j}].shape")
        if not dims or dims[-1] != classes:
            c.fail(f"{where}.outputs[{j}].shape", f"{dims!r:.60} does not end in num_classes {classes} "
                                                  "(every stitch must have the same output shape)")
    ver = e.get("verified")
    if ver is not None:
        ver = c.dict(ver, f"{where}.verified")
        if "ok" in ver:
            c.bool(ver["ok"], f"{where}.verified.ok")


def _check_engines(c: _Check, folder: Path, target: dict[str, Any], where: str) -> None:
    stitches = c.list(target.get("stitches", []), f"{where}.stitches")
    for j, rec in enumerate(stitches):
        w = f"{where}.stitches[{j}]"
        rec = c.dict(rec, w)
        c.int(c.get(rec, "id", w + "."), f"{w}.id")
        contained(folder, c.get(rec, "file", w + "."), f"{w}.file", c)
        contained(folder, c.get(rec, "onnx", w + "."), f"{w}.onnx", c)
        c.int(c.get(rec, "size", w + "."), f"{w}.size")
        for key in ("stripped", "version_compatible"):
            if key in rec:
                c.bool(rec[key], f"{w}.{key}")
    c.unique_ids(stitches, lambda r: r["id"], f"{where}.stitches")


def check_profile(data: Any, file: str | Path, error: type[Exception]) -> dict[str, Any]:
    """Validate a parsed profile (``schema`` already checked); returns it unchanged."""
    c = _Check(file, error)
    data = c.dict(data, "profile")
    c.str(c.get(data, "backend", ""), "backend")
    c.str(c.get(data, "device", ""), "device")
    batches = c.list(c.get(data, "batches", ""), "batches")
    if not batches:
        c.fail("batches", "is empty")
    for i, b in enumerate(batches):
        c.int(b, f"batches[{i}]", 1)
    _check_records(c, c.list(c.get(data, "stitches", ""), "stitches"), "stitches", set(batches))
    base = data.get("baseline")
    if base is not None:
        for name, recs in c.dict(base, "baseline").items():
            _check_records(c, c.list(recs, f"baseline.{name}"), f"baseline.{name}", set(batches))
    return data


def _check_records(c: _Check, records: list[Any], where: str, batches: set[int]) -> None:
    for i, r in enumerate(records):
        w = f"{where}[{i}]"
        r = c.dict(r, w)
        c.int(c.get(r, "id", w + "."), f"{w}.id")
        b = c.int(c.get(r, "batch", w + "."), f"{w}.batch", 1)
        if b not in batches:
            c.fail(f"{w}.batch", f"{b} is not one of the profile's batches {sorted(batches)}")
        c.num(c.get(r, "throughput", w + "."), f"{w}.throughput", positive=True)
        lat = c.dict(c.get(r, "latency_ms", w + "."), f"{w}.latency_ms")
        for key in ("p50", "p90", "p99"):
            c.get(lat, key, f"{w}.latency_ms.")
        for key, value in lat.items():
            if key in ("ci95", "p50_ci"):  # [low, high] of the median (bench.stats.median_ci)
                if not isinstance(value, list) or len(value) != 2:
                    c.fail(f"{w}.latency_ms.{key}", f"must be [low, high], got {value!r:.60}")
                for k, v in enumerate(value):
                    c.num(v, f"{w}.latency_ms.{key}[{k}]")
                continue
            c.num(value, f"{w}.latency_ms.{key}")
        if "runs" in r:
            c.int(r["runs"], f"{w}.runs", 1)
        if "tie_group" in r:  # the ids tied with it in speed, itself included (bench.ties)
            members = c.list(r["tie_group"], f"{w}.tie_group")
            for k, v in enumerate(members):
                c.int(v, f"{w}.tie_group[{k}]")
            if r["id"] not in members:
                c.fail(f"{w}.tie_group", f"must include the record's own id {r['id']}, got {members!r:.60}")
        if "resolved" in r:
            c.bool(r["resolved"], f"{w}.resolved")
    c.unique_ids(records, lambda r: (r["id"], r["batch"]), where)
