"""Profiles that grow: merge a re-bench into the existing profile, and judge whether it can rank.

``merge_profiles(old, new)`` keeps every measurement of ``old`` that ``new`` did not repeat, so
``bench FOLDER --configs 0`` refreshes one stitch instead of discarding the other 70. It refuses,
naming the difference, when the two were measured under settings that change what a latency means
(device, backend, precision, ONNX Runtime mode and options, threads, TensorRT target, runtime
version). Run counts and durations may differ: each record carries its own runs and CI.

``ranking_quality(profile)`` says, per batch, how wide the stitches' confidence intervals are and
which stitches are too noisy to rank (:data:`.stats.MAX_REL_CI`). Imports NumPy only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BenchError
from .stats import MAX_REL_CI, rel_width

log = logging.getLogger(__name__)


def settings_key(profile: Mapping[str, Any]) -> dict[str, Any]:
    """What a merged profile's measurements must share (absent fields read as ``None``)."""
    env = profile.get("environment") or {}
    return {"device": profile.get("device"), "backend": profile.get("backend"),
            "precision": profile.get("precision"), "ort_mode": profile.get("ort_mode"),
            "ort": env.get("ort"), "threads": env.get("threads"), "target": profile.get("target"),
            "onnxruntime": env.get("onnxruntime"), "tensorrt": env.get("tensorrt")}


def incompatibility(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why ``new`` cannot be merged into ``old`` (one line), or ``None`` when it can."""
    a, b = settings_key(old), settings_key(new)
    diffs = [f"{k} {a[k]!r} (existing) vs {b[k]!r} (this run)" for k in a if a[k] != b[k]]
    return "; ".join(diffs) or None


def _session(profile: Mapping[str, Any]) -> dict[str, Any]:
    env = profile.get("environment") or {}
    ids = sorted({r["id"] for r in profile.get("stitches", [])})
    peak = (env.get("matmul_peak") or {}).get("gflops")
    return {"created": profile.get("created"), "ids": ids, "batches": list(profile.get("batches", [])),
            "load_average": env.get("load_average"), "cpu_mhz": env.get("cpu_mhz"), "matmul_peak_gflops": peak}


def _merge_records(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fresh = {(r["id"], r["batch"]) for r in new}
    kept = [r for r in old if (r["id"], r["batch"]) not in fresh]
    return sorted(kept + list(new), key=lambda r: (r["id"], r["batch"]))


def merge_profiles(old: Mapping[str, Any], new: Mapping[str, Any], where: str = "the profile") -> dict[str, Any]:
    """``new`` with every record of ``old`` it did not re-measure; raises on incompatible settings.

    Raises:
        BenchError: the two were measured with different settings (the message names them).
    """
    why = incompatibility(old, new)
    if why:
        raise BenchError(f"cannot merge this run into {where}: {why}; bench with the existing settings, "
                         "or pass --replace (replace=True) to discard the old measurements")
    out = dict(new)
    out["stitches"] = _merge_records(list(old.get("stitches", [])), list(new.get("stitches", [])))
    out["batches"] = sorted(set(old.get("batches", [])) | set(new.get("batches", [])))
    if old.get("baseline") or new.get("baseline"):
        out["baseline"] = {"torch": _merge_records(list((old.get("baseline") or {}).get("torch", [])),
                                                   list((new.get("baseline") or {}).get("torch", [])))}
    out["sessions"] = list(old.get("sessions") or [_session(old)]) + [_session(new)]
    out.pop("_file", None)
    out["quality"] = ranking_quality(out)
    return out


def ranking_quality(profile: Mapping[str, Any], max_rel_ci: float = MAX_REL_CI) -> dict[str, Any]:
    """Per batch: median and worst relative CI width, and the stitches too noisy to rank.

    Returns:
        ``{"max_rel_ci": 0.1, "batches": {"1": {"median_rel_ci", "max_rel_ci", "noisy": [ids],
        "rankable": bool}}}``; records without a CI (older profiles) count as unknown, not noisy.
    """
    out: dict[str, Any] = {"max_rel_ci": max_rel_ci, "batches": {}}
    for batch in sorted({r["batch"] for r in profile.get("stitches", [])}):
        widths = {r["id"]: rel_width(r["latency_ms"]["p50"], r["latency_ms"]["ci95"])
                  for r in profile["stitches"] if r["batch"] == batch and "ci95" in r["latency_ms"]}
        if not widths:
            out["batches"][str(batch)] = {"rankable": None, "noisy": [], "note": "no confidence intervals recorded"}
            continue
        noisy = sorted(i for i, w in widths.items() if w > max_rel_ci)
        out["batches"][str(batch)] = {"median_rel_ci": round(float(np.median(list(widths.values()))), 4),
                                      "max_rel_ci": round(max(widths.values()), 4), "noisy": noisy,
                                      "rankable": not noisy, **_tie_summary(profile, batch)}
    return out


def _tie_summary(profile: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Resolved share, unresolved ids and tie groups of one batch (records judged by :mod:`.ties`)."""
    recs = [r for r in profile["stitches"] if r["batch"] == batch and "resolved" in r]
    if not recs:
        return {}
    groups = {tuple(r["tie_group"]) for r in recs if len(r.get("tie_group", ())) > 1}
    unresolved = sorted(r["id"] for r in recs if not r["resolved"])
    return {"resolved_share": round(1 - len(unresolved) / len(recs), 4), "unresolved": unresolved,
            "tie_groups": sorted(list(g) for g in groups)}


def quality_warnings(quality: Mapping[str, Any]) -> list[str]:
    """One line per batch whose spread is too large to rank its stitches."""
    lines = []
    for batch, q in (quality.get("batches") or {}).items():
        if q.get("unresolved"):
            ids = q["unresolved"]
            lines.append(f"batch {batch}: {len(ids)} stitch(es) neither separated from nor tied with a FLOPs "
                         f"neighbour (ids {ids[:10]}{' ...' if len(ids) > 10 else ''}; {100 * q['resolved_share']:.0f}% "
                         "resolved): their ranking is not resolved; re-bench them with a larger --time-budget or "
                         "on a quieter machine (the profile merges)")
        elif q.get("noisy"):
            ids = q["noisy"]
            what = ("their throughput figures are imprecise (their order against their FLOPs neighbours is "
                    "resolved)") if "unresolved" in q else "their ranking is not resolved"
            lines.append(f"batch {batch}: {len(ids)} stitch(es) have a 95% CI of the median latency wider than "
                         f"{quality['max_rel_ci']:.0%} (worst {q['max_rel_ci']:.0%}; ids {ids[:10]}"
                         f"{' ...' if len(ids) > 10 else ''}): {what}; re-bench them "
                         "on a quieter machine or with more --runs/--rounds (the profile merges)")
    return lines


def finish_profile(folder: Path, profile: dict[str, Any], write: bool, replace: bool,
                   manifest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``profile`` into this device's existing one (unless ``replace``) and into a measurement an
    earlier run could not write (:mod:`.unsaved`), judge its spread and ties (:mod:`.ties`, over the
    merged records, with ``manifest``'s FLOPs), warn, write atomically.

    Raises:
        BenchError: the write failed (one line: the previous profile is intact, where this run's
            measurement was kept for the next run to merge).
    """
    from ..engine_folder.profile import find_profile, profile_path
    from .ties import DEFAULT_TARGET, annotate
    from .unsaved import take_unsaved

    path = profile_path(folder, profile["device"], profile["backend"])
    pending = dict(profile)  # what a failed write keeps aside: this run, over earlier unsaved runs
    old = find_profile(folder, profile["backend"], profile["device"]) if write and not replace else None
    sides = take_unsaved(path) if write else []
    for side, unsaved in sides:  # older than this run's measurement, newer than the profile's
        if incompatibility(unsaved, profile) is None:
            name = old["_file"] if old is not None else side.name
            old = dict(merge_profiles(old, unsaved) if old is not None else unsaved, _file=name)
            pending = merge_profiles(unsaved, pending)
            log.info("merging the measurement an earlier run could not write (%s)", side)
    if old is not None:
        profile = merge_profiles(old, profile, where=str(folder / old["_file"]))
        log.info("merged into %s: %d records", old["_file"], len(profile["stitches"]))
    if manifest is not None:
        target = ((profile.get("environment") or {}).get("timing") or {}).get("sampling", {}).get("ci_target")
        annotate(profile["stitches"], {e["id"]: float(e.get("flops") or 0.0) for e in manifest["configs"]},
                 target or DEFAULT_TARGET)
    profile["quality"] = ranking_quality(profile)
    for line in quality_warnings(profile["quality"]):
        log.warning(line)
    if write:
        _write(path, profile, pending, [s for s, _ in sides])
    return profile


def _write(path: Path, profile: dict[str, Any], pending: dict[str, Any], sides: list[Path]) -> None:
    """Write the profile atomically; on failure keep ``pending`` aside and say so.

    ``pending`` is this run's measurement merged over the earlier unsaved ones it read from ``sides``,
    so a second failed write in a row loses neither run; the side files it replaces are removed.
    """
    from .. import fileio
    from .unsaved import drop_unsaved, keep_unsaved

    try:
        fileio.write_json_atomic(path, profile)
    except OSError as exc:
        pending.pop("_file", None)
        side, why = keep_unsaved(path, pending)
        if side is not None:
            drop_unsaved([s for s in sides if s != side])
        kept = (f"this run's measurement is kept in {side} and the next bench of this folder merges it"
                if side else f"this run's measurement could not be kept either ({why})")
        raise BenchError(f"could not write {path} ({exc.strerror or exc}); the previous profile is intact; "
                         f"{kept}; free space or fix permissions, then re-run bench") from None
    drop_unsaved([s for s in sides if s != path])
    log.debug("profile of %d records written to %s", len(profile["stitches"]), path)
