"""Broken and hostile engine folders for conformance traces: one mutation of a valid folder each.

Every mutation changes the manifest or the profile as a file (text or bytes) or the folder (a
symbolic link on a path); the trace records the error kind the real Python Selector raised on it
(``manifest``: :class:`VerifyError`, ``profile``: :class:`BenchError`, ``selector``:
:class:`SelectorError`), which the C library must report as its matching status.
"""
from __future__ import annotations

import json
import random
from typing import Any, Callable

#: one folder's files before writing: name -> bytes; symlinks: name -> target
Files = dict[str, bytes]
Mutation = Callable[[dict[str, Any], dict[str, Any], random.Random], tuple[Files, dict[str, str]]]
MANIFEST, PROFILE = "manifest.json", "profile.synthetic.json"


def _dump(manifest: dict[str, Any], profile: dict[str, Any]) -> Files:
    return {MANIFEST: json.dumps(manifest).encode(), PROFILE: json.dumps(profile).encode()}


def _entry(manifest: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    entry: dict[str, Any] = rng.choice(manifest["configs"])
    return entry


def _record(profile: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    rec: dict[str, Any] = rng.choice(profile["stitches"])
    return rec


def _edit(fn: Callable[[dict[str, Any], dict[str, Any], random.Random], None]) -> Mutation:
    def mutate(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> tuple[Files, dict[str, str]]:
        fn(m, p, rng)
        return _dump(m, p), {}
    return mutate


def _text(name: str, fn: Callable[[bytes, random.Random], bytes]) -> Mutation:
    def mutate(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> tuple[Files, dict[str, str]]:
        files = _dump(m, p)
        files[name] = fn(files[name], rng)
        return files, {}
    return mutate


def _symlink(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> tuple[Files, dict[str, str]]:
    _entry(m, rng)["onnx"] = "sub/stitch.onnx"
    return _dump(m, p), {"sub": ".."}


def _set(path: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any], random.Random], None]:
    """Set a field: ``m.key``/``p.key`` top level, ``e.key`` a random config, ``r.key`` a random profile record."""
    where, key = path.split(".", 1)

    def fn(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> None:
        pick: dict[str, Callable[[], dict[str, Any]]] = {
            "m": lambda: m, "p": lambda: p, "e": lambda: _entry(m, rng), "r": lambda: _record(p, rng),
            "w": lambda: m["weights"], "l": lambda: _record(p, rng)["latency_ms"]}
        obj = pick[where]()
        if value is _DELETE:
            obj.pop(key, None)
        else:
            obj[key] = value
    return fn


_DELETE = object()


def _dup_id(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> None:
    if len(m["configs"]) > 1:
        m["configs"][1]["id"] = m["configs"][0]["id"]
    else:
        m["configs"].append(dict(m["configs"][0]))


def _dup_record(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> None:
    p["stitches"].append(dict(p["stitches"][0]))


def _unmeasured(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> None:
    for r in p["stitches"]:
        r["id"] += 100_000


def _nan(name: str, key: str) -> Mutation:
    def fn(text: bytes, rng: random.Random) -> bytes:
        return text.replace(f'"{key}": '.encode(), f'"{key}": {rng.choice(["NaN", "Infinity", "-Infinity", "1e400"])}, "x{key}": '.encode(), 1)
    return _text(name, fn)


def _deep(name: str) -> Mutation:
    def fn(text: bytes, rng: random.Random) -> bytes:
        depth = rng.choice([20_000, 100_000])
        return text.replace(b'{', b'{"deep": ' + b'[' * depth + b']' * depth + b', ', 1)
    return _text(name, fn)


def _drop(name: str) -> Mutation:
    def mutate(m: dict[str, Any], p: dict[str, Any], rng: random.Random) -> tuple[Files, dict[str, str]]:
        files = _dump(m, p)
        del files[name]
        return files, {}
    return mutate


MUTATIONS: dict[str, Mutation] = {
    "manifest_missing": _drop(MANIFEST),
    "profile_missing": _drop(PROFILE),
    "schema_version": _edit(_set("m.schema_version", 2)),
    "not_manifest": _edit(_set("m.schema", "something/else")),
    "duplicate_id": _edit(_dup_id),
    "escaping_dotdot": _edit(_set("e.onnx", "../outside.onnx")),
    "escaping_absolute": _edit(_set("e.onnx", "/etc/passwd")),
    "escaping_backslash": _edit(_set("e.onnx", "..\\x.onnx")),
    "escaping_weights": _edit(_set("w.file", "../weights.bin")),
    "escaping_symlink": _symlink,
    "id_float": _edit(_set("e.id", 1.5)),
    "id_bool": _edit(_set("e.id", True)),
    "id_negative": _edit(_set("e.id", -3)),
    "flops_string": _edit(_set("e.flops", "4.6G")),
    "acc_over_100": _edit(_set("e.accuracy", {"acc1": 170.0})),
    "classes_string": _edit(_set("m.num_classes", "1000")),
    "configs_object": _edit(_set("m.configs", {})),
    "missing_weights": _edit(_set("m.weights", _DELETE)),
    "bad_sha": _edit(_set("e.onnx_sha256", "xyz")),
    "bad_precision": _edit(_set("m.precision", "int4")),
    "manifest_nan": _nan(MANIFEST, "flops"),
    "manifest_deep": _deep(MANIFEST),
    "manifest_truncated": _text(MANIFEST, lambda t, rng: t[:rng.randrange(1, len(t))]),
    "manifest_binary": _text(MANIFEST, lambda t, rng: b"\xff\xfe\x00garbage\x80"),
    "manifest_bom": _text(MANIFEST, lambda t, rng: b"\xef\xbb\xbf" + t),
    "manifest_empty": _text(MANIFEST, lambda t, rng: b""),
    "profile_nan": _nan(PROFILE, "throughput"),
    "profile_deep": _deep(PROFILE),
    "profile_truncated": _text(PROFILE, lambda t, rng: t[:rng.randrange(1, len(t))]),
    "throughput_zero": _edit(_set("r.throughput", 0)),
    "throughput_negative": _edit(_set("r.throughput", -10.5)),
    "batch_unlisted": _edit(_set("r.batch", 999)),
    "latency_missing": _edit(_set("l.p90", _DELETE)),
    "latency_string": _edit(_set("l.p99", "slow")),
    "duplicate_record": _edit(_dup_record),
    "profile_schema": _edit(_set("p.schema", "snnet-export/other")),
    "batches_empty": _edit(_set("p.batches", [])),
    "unmeasured": _edit(_unmeasured),
    "ort_mode": _edit(_set("p.ort_mode", "turbo")),
    "tie_group_without_self": _edit(_set("r.tie_group", [100_001, 100_002])),
    "tie_group_strings": _edit(_set("r.tie_group", ["a"])),
    "p50_ci_short": _edit(_set("l.p50_ci", [1.0])),
    "resolved_string": _edit(_set("r.resolved", "yes")),
}
