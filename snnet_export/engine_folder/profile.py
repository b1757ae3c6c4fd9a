"""Measured profiles (``profile.<device>.json``) and the throughput-vs-Top-1 Pareto frontier.

Schema (``version`` 1), written by ``snnet-export bench``::

    {"schema": "snnet-export/profile", "version": 1, "device": "cpu-amd-epyc-9654",
     "backend": "ort" | "trt" | "torch", "precision": "fp32",
     "environment": {"cpu": ..., "gpu": ..., "threads": 2, "onnxruntime": ..., "python": ...},
     "batches": [1, 16],
     "stitches": [{"id": 3, "batch": 1, "throughput": 812.4,  # images/s
                   "throughput_ci95": [790.0, 830.1], "rel_ci": 0.05,   # CI of the median
                   "latency_ms": {"mean": .., "p50": .., "p90": .., "p99": .., "ci95": [lo, hi],
                                  "p50_ci": [lo, hi]},   # the same 95 % CI of the median
                   "tie_group": [3, 4],   # ids tied with it in speed at this batch (itself included)
                   "resolved": true,      # every FLOPs neighbour separated from it or tied with it
                   "efficiency": {"gflops": 70.1, "of_peak": 0.71}, "runs": 50}, ...],
     "quality": {"max_rel_ci": 0.1, "batches": {"1": {"rankable": true, "noisy": [], ...}}},
     "sessions": [{"created", "ids", "batches", "load_average", ...}],  # after a merge
     "baseline": {"torch": [same records, PyTorch eager]}}   # only with --baseline torch

CI, tie, quality, sessions and efficiency fields are optional (older profiles lack them).

Imports no torch, timm or click.
"""
from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

PROFILE_SCHEMA = "snnet-export/profile"
PROFILE_VERSION = 1


def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "unknown"


def device_name(backend: str, gpu: str | None = None) -> str:
    """Short device id used in profile file names: ``cpu-<model>`` or ``gpu-<GPU name>``.

    A TensorRT device id needs the GPU's name (this machine's:
    :func:`snnet_export.runtime.trt.this_gpu_device`), so this module stays free of CUDA.
    """
    if gpu:
        return "gpu-" + slug(gpu)
    if backend == "trt":
        raise ValueError("a TensorRT profile's device id needs the GPU name: use runtime.trt.this_gpu_device()")
    return "cpu-" + slug(cpu_name())


def profile_path(folder: str | Path, device: str, backend: str) -> Path:
    """``folder/profile.<device>.json`` for ONNX Runtime, ``profile.<device>.<backend>.json`` else."""
    suffix = "" if backend == "ort" else f".{backend}"
    return Path(folder) / f"profile.{device}{suffix}.json"


def read_profile(path: str | Path) -> dict[str, Any]:
    """Read and schema-check one profile file; raise :class:`BenchError` naming the file and field.

    The one door to a profile (:func:`.schema.check_profile`): NaN or infinite throughputs,
    negative batches, missing fields or invalid JSON are refused, never read as "no profile".
    """
    from ..errors import BenchError
    from ..fileio import read_json
    from .schema import check_profile

    path = Path(path)
    data = read_json(path, "profile ", BenchError, "delete it and re-run `snnet-export bench`")
    if not isinstance(data, dict) or data.get("schema") != PROFILE_SCHEMA:
        raise BenchError(f"{path} is not an snnet-export profile (no \"schema\": \"{PROFILE_SCHEMA}\")")
    check_profile(data, str(path), BenchError)
    data["_file"] = path.name
    return data


def load_profiles(folder: str | Path) -> list[dict[str, Any]]:
    """Every profile in ``folder`` (newest file first); a corrupt one raises :class:`BenchError`."""
    paths = sorted(Path(folder).glob("profile.*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [read_profile(p) for p in paths]


def find_profile(folder: str | Path, backend: str, device: str | None = None) -> dict[str, Any] | None:
    """The profile of ``backend`` measured on ``device`` (default: this CPU; TensorRT needs ``device``), else ``None``."""
    want = device or device_name(backend)
    for prof in load_profiles(folder):
        if prof.get("backend") == backend and prof.get("device") == want:
            return prof
    return None


def throughputs(profile: Mapping[str, Any], batch: int) -> dict[int, dict[str, Any]]:
    """``{stitch id: record}`` of ``profile`` at ``batch``."""
    return {r["id"]: r for r in profile.get("stitches", []) if r["batch"] == batch}


def pareto_front(points: Iterable[tuple[int, float, float]], groups: Mapping[int, int] | None = None) -> list[int]:
    """Ids on the frontier of (throughput, accuracy), both maximised, sorted by throughput (slowest first).

    Rule, in this order (deterministic; ids are ints, throughput and accuracy doubles):

    1. Tie groups: ``groups`` maps an id to its tie-group label (stitches whose speeds the
       measurement cannot tell apart, :func:`tie_groups`); an id without a label is a group of
       its own. Each group is represented by one member: the most accurate; among equally
       accurate members the faster; then the lower id. Other members never enter the frontier,
       so which of two tied stitches measured faster this time cannot move either of them on or
       off it. The representative keeps its own measured throughput.
    2. Pareto front of the representatives: sort by (throughput descending, accuracy descending,
       id ascending); walk that order and keep a point when its accuracy is strictly greater than
       every accuracy kept before it. So a point is kept when no other point is at least as fast
       and as accurate and strictly better in one (of exact duplicates, the lower id).
    3. Return the kept ids in reverse walk order (throughput ascending).
    """
    pts = [(int(i), float(t), float(a)) for i, t, a in points]
    if groups:
        best: dict[int, tuple[int, float, float]] = {}
        for p in pts:
            label = groups.get(p[0], p[0])
            cur = best.get(label)
            if cur is None or (p[2], p[1], -p[0]) > (cur[2], cur[1], -cur[0]):
                best[label] = p
        pts = list(best.values())
    pts.sort(key=lambda p: (-p[1], -p[2], p[0]))
    front, best_acc = [], float("-inf")
    for pid, _, acc in pts:
        if acc > best_acc:
            front.append(pid)
            best_acc = acc
    return front[::-1]


def tie_groups(profile: Mapping[str, Any], batch: int) -> dict[int, int]:
    """``{stitch id: tie-group label}`` at ``batch`` from the records' ``tie_group`` member lists.

    The label is the group's lowest id. Records without ``tie_group`` (older profiles) and groups of
    one are left out: each is its own group.
    """
    out: dict[int, int] = {}
    for r in profile.get("stitches", []):
        members = r.get("tie_group")
        if r["batch"] == batch and members and len(members) > 1:
            out[r["id"]] = min(members)
    return out


def unresolved_on_front(front: list[int], ci: Mapping[int, tuple[float, float] | None]) -> set[int]:
    """Frontier ids whose speed advantage over the next more accurate frontier stitch is not resolved.

    ``front`` is :func:`pareto_front`'s order (slowest, most accurate first); ``ci`` maps ids to
    their throughput 95 % CI. A stitch is on the frontier because it is faster than every more
    accurate one; when its CI overlaps its more accurate neighbour's, the measurement cannot tell
    that it is (it may not belong on the frontier). Stitches without a CI count as resolved.
    """
    out = set()
    for slower, faster in zip(front, front[1:]):
        a, b = ci.get(slower), ci.get(faster)
        if a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]:
            out.add(faster)
    return out


def accuracy_of(entry: Mapping[str, Any]) -> float | None:
    """Top-1 of a manifest entry, or ``None`` when unknown."""
    acc = entry.get("accuracy")
    return None if not acc or acc.get("acc1") is None else float(acc["acc1"])
