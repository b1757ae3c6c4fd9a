"""Write seeded conformance traces: a synthetic engine folder plus events and the Python Selector's decisions.

Trace file (``trace_NNNNN.json``, language-neutral JSON)::

    {"format": "snnet-export/conformance-trace", "version": 1, "seed": 7, "index": 3,
     "family": "deit_tsb", "case": "valid" | "<mutation name>",
     "files": {"manifest.json": {"text": "..."} | {"base64": "..."}, "profile.synthetic.json": {...}},
     "symlinks": {"sub": ".."},                       # created in the folder before opening
     "open": {"backend": "ort" | "trt", "profile": "profile.synthetic.json", "target": null | "dgpu",
              "hysteresis": 0.05, "latency_stat": "p90", "adaptive": true, "hold": true},
     "expect_open": {"ok": true, "frontier": [...], "current": 2, "batch": 1, "accuracy_proxy": false,
                     "candidates": [...], "engines": {"2": "stitch_002.onnx" | null, ...}}
                    | {"ok": false, "error": "manifest" | "profile" | "selector"},
     "events": [{"op": "set_budget", "min_throughput": 400.0 | null | "nan", "max_latency_ms": ..., "batch": 8 | null,
                 "expect": {"id": 3, "no_fit": false, "current": 3, "correction": 1.0, "tails": null}
                           | {"error": "argument"}},
                {"op": "observe", "stitch": 3, "batch": 8, "seconds": 0.0123,
                 "expect": {"rechose": false, "no_fit": false, "current": 3, "correction": .., "tails": {..} | null}
                           | {"error": "unknown_stitch"}},
                {"op": "choose", "expect": {"id": .., "no_fit": .., ...}},
                {"op": "describe", "stitch": null | 3, "expect": {"describe": {...}} | {"error": "unknown_stitch"}}]}

Numbers are written with Python's shortest round-trip repr, so a reader parsing them gets the
same doubles. Imports no torch.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..engine_folder.engine_records import find_record
from ..errors import BenchError, SelectorError, VerifyError
from ..fileio import check_writable
from ..runtime.selector import Selector
from .bad import MANIFEST, MUTATIONS, PROFILE, Files
from .events import Recorder, run_script
from .folders import FAMILIES, TARGETS, TableRow, family_table, make_manifest, make_profile

TRACE_FORMAT = "snnet-export/conformance-trace"
TRACE_VERSION = 1
_KINDS = ((VerifyError, "manifest"), (BenchError, "profile"), (SelectorError, "selector"))


def generate_traces(seed: int, count: int, out: str | Path) -> dict[str, Any]:
    """Write ``count`` traces from ``seed`` into ``out``; returns a summary (traces, valid, bad, events).

    The same ``seed`` and ``count`` always write the same files (each trace has its own
    ``random.Random("seed:index")``).
    """
    out = Path(out)
    check_writable(out, "conformance output folder", SelectorError, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"seed": seed, "traces": count, "valid": 0, "bad": 0, "events": 0,
                               "families": {f: 0 for f in FAMILIES}, "cases": {}}
    quiet = logging.getLogger("snnet_export.runtime")  # one INFO line per switch: thousands here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        for index in range(count):
            _write(out, make_trace(seed, index), summary)
    finally:
        quiet.setLevel(level)
    return summary


def _write(out: Path, trace: dict[str, Any], summary: dict[str, Any]) -> None:
    """Write one trace compactly (no indent: a trace holds a whole folder) and count it."""
    (out / f"trace_{trace['index']:05d}.json").write_text(json.dumps(trace, separators=(",", ":")))
    summary["valid" if trace["case"] == "valid" else "bad"] += 1
    summary["events"] += len(trace["events"])
    summary["families"][trace["family"]] += 1
    summary["cases"][trace["case"]] = summary["cases"].get(trace["case"], 0) + 1


def _rows(family: str, rng: random.Random) -> list[TableRow]:
    rows = family_table(family)
    if rng.random() < 0.5:
        rows = sorted(rng.sample(rows, rng.randint(1, len(rows))), key=lambda r: r.id)
    if rng.random() < 0.25 and len(rows) > 1:  # exact accuracy ties
        for _ in range(rng.randint(1, 4)):
            a, b = rng.sample(range(len(rows)), 2)
            rows[a] = dataclasses.replace(rows[a], top1=rows[b].top1)
    return rows


def make_trace(seed: int, index: int) -> dict[str, Any]:
    """One trace: folder, open options, and the Python Selector's decisions (see the module docstring)."""
    rng = random.Random(f"{seed}:{index}")
    family = FAMILIES[index % len(FAMILIES)]
    rows = _rows(family, rng)
    trt = rng.random() < 0.25
    targets = tuple(t for t in TARGETS if rng.random() < 0.7) or TARGETS[:1] if trt else ()
    manifest = make_manifest(family, rows, rng, unknown=0.3 if rng.random() < 0.15 else 0.0, targets=targets)
    batches = rng.choice([[1], [1, 8], [1, 4, 16], [2, 8], [8, 1, 4], [1, 2, 4, 8, 16, 32]])
    profile = make_profile(rows, rng, batches, backend="trt" if trt else "ort",
                           target=rng.choice(targets) if trt else None, ties=rng.choice([0, 0, 1, 3]),
                           quantise=rng.random() < 0.15)
    opts = {"backend": "trt" if trt else "ort", "profile": PROFILE,
            "target": rng.choice([None, *targets]) if trt else None,
            "hysteresis": rng.choice([0.0, 0.05, 0.1, round(rng.uniform(0.0, 0.3), 6)]),
            "latency_stat": rng.choice(["p50", "p90", "p99"]), "adaptive": rng.random() < 0.85,
            "hold": index % 5 != 4}  # from the index: the other options' draws stay as they were
    case = "valid"
    symlinks: dict[str, str] = {}
    if index % 4 == 3:  # a quarter are broken folders
        case = rng.choice(sorted(MUTATIONS))
        files, symlinks = MUTATIONS[case](manifest, profile, rng)
    else:
        files = {MANIFEST: json.dumps(manifest).encode(), PROFILE: json.dumps(profile).encode()}
    expect_open, events = _run(files, symlinks, opts, rng, manifest)
    return {"format": TRACE_FORMAT, "version": TRACE_VERSION, "seed": seed, "index": index, "family": family,
            "case": case, "files": {k: _encode(v) for k, v in files.items()}, "symlinks": symlinks,
            "open": opts, "expect_open": expect_open, "events": events}


def _encode(data: bytes) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _run(files: Files, symlinks: dict[str, str], opts: dict[str, Any], rng: random.Random,
         manifest: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Open the reference Selector on the written folder and run a script on it."""
    with tempfile.TemporaryDirectory(prefix="snnet-conf-") as tmp:
        folder = Path(tmp)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        for name, target in symlinks.items():
            (folder / name).symlink_to(target)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sel = Selector(folder, backend=opts["backend"], resident="none", profile=folder / opts["profile"],
                               hysteresis=opts["hysteresis"], target=opts["target"],
                               latency_stat=opts["latency_stat"], adaptive=opts["adaptive"],
                               hold=opts.get("hold", True))
        except tuple(k for k, _ in _KINDS) as exc:
            kind = next(name for cls, name in _KINDS if isinstance(exc, cls))
            return {"ok": False, "error": kind, "message": str(exc).replace(str(folder), "FOLDER")}, []
        proxy = any("no known accuracy" in str(w.message) for w in caught)
        expect = {"ok": True, "frontier": sel.frontier, "current": sel.current, "batch": sel.batch,
                  "accuracy_proxy": proxy, "candidates": sorted(sel.candidates),
                  "engines": {str(i): _engine(sel, manifest, i) for i in sel.candidates}}
        rec = Recorder(sel, rng)
        run_script(rec, rng.randint(40, 300))
        return expect, rec.events


def _engine(sel: Selector, manifest: dict[str, Any], cfg_id: int) -> str | None:
    """The engine file (relative to the folder) the app runs for ``cfg_id``: its ONNX, or the target's plan."""
    if sel.backend != "trt":
        return str(sel._entries[cfg_id]["onnx"])
    record = find_record(manifest, sel.target or sel.profile.get("target", "dgpu"), cfg_id)
    return None if record is None else record.file
