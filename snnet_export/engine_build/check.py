"""``snnet-export check``: what TensorRT's ONNX parser and builder would reject, found on a CPU.

:func:`check_folder` reads an engine folder's manifest and stitch ONNX files (graphs only: weights
stay on disk) and lists every problem a build for a target would hit on the device:

* **opset**: each graph's ``ai.onnx`` opset against the range the target's TensorRT parser documents
  and the target's ``max_opset``; other op domains (contrib or custom ops) need plugins.
* **ops**: every node's op type (subgraphs included) against the support table
  :mod:`.trt_onnx_support` (from onnx-tensorrt's ``operators.md`` and changelog, per version).
* **external data**, as the parser reads it (onnx-tensorrt ``WeightsContext.cpp``): only the keys
  ``location``/``offset``/``length``/``checksum``; a bare file name inside the folder (no ``..``, no
  absolute path); ``length`` present and equal to the tensor's size; ``offset + length`` within the file.
* **types**: strict ONNX shape and type inference (``check_type``, ``strict_mode``), which rejects the
  FP16/FP32 mixing a strongly typed build (TensorRT 11, and FP16 exports on 10.x) refuses.
* **batch**: one input named as the manifest says, a batch dimension the target's optimisation
  profile can vary (symbolic, or fixed to the profile's one batch), the export's ``batch_max``.
* **DLA** (targets with ``dla.core``): op types the DLA cannot run need ``gpu_fallback``.

The TensorRT version checked against is the target's ``min_tensorrt`` unless one is given (``build``
passes the installed one). Nothing here imports TensorRT.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from ..engine_folder.engine_records import parse_version
from ..errors import BuildError
from . import trt_onnx_support as table
from .targets import TargetProfile, load_target

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)
EXTERNAL_KEYS = ("location", "offset", "length", "checksum")  # what the parser accepts; others: error
_ONNX_DOMAINS = ("", "ai.onnx")


class CheckError(BuildError):
    """The folder has problems TensorRT would reject; the message lists them."""


@dataclass(frozen=True)
class Problem:
    """One thing TensorRT would reject (``error``) or that deserves a look (``warning``)."""

    where: str  # a file of the folder, or "target"
    what: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.what}"


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_folder` found for one folder, target and TensorRT version."""

    folder: Path
    target: str
    tensorrt_version: str
    files: tuple[str, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = (f"check {self.folder} for target {self.target} (TensorRT {self.tensorrt_version}): "
                f"{len(self.files)} graph(s), {len(self.errors)} error(s), "
                f"{len(self.problems) - len(self.errors)} warning(s)")
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def opset_range(tensorrt_version: str) -> tuple[int, int]:
    """``(min, max)`` ai.onnx opset the parser of ``tensorrt_version`` documents (newest row at or below it)."""
    here = parse_version(tensorrt_version)
    rows = sorted(((parse_version(v), r) for v, r in table.VERSIONS.items()), key=lambda x: x[0])
    usable = [r for v, r in rows if v <= here]
    if not usable:
        raise BuildError(f"TensorRT {tensorrt_version} is older than every row of the support table "
                         f"(oldest {rows[0][0]}): snnet-export builds with TensorRT 10.x or 11.x")
    return int(str(usable[-1]["opset_min"])), int(str(usable[-1]["opset_max"]))


def op_problem(op: str, domain: str, tensorrt_version: str) -> Problem | None:
    """Why TensorRT ``tensorrt_version``'s parser would not import ``domain::op`` (None: it does)."""
    if domain not in _ONNX_DOMAINS:
        return Problem("", f"op {op} of domain '{domain}' is not an ONNX op TensorRT's parser imports "
                           "(a contrib or custom op needs a TensorRT plugin): re-export without it")
    if op in table.UNSUPPORTED:
        return Problem("", f"op {op} is not supported by TensorRT's ONNX parser (onnx-tensorrt operators.md)")
    since = table.OPS.get(op)
    if since is None:
        return Problem("", f"op {op} is not in snnet-export's support table (the ops its exports use): check "
                           "onnx-tensorrt's docs/operators.md for this TensorRT", "warning")
    if parse_version(tensorrt_version) < parse_version(str(since)):
        return Problem("", f"op {op} needs TensorRT >= {since}; this target's TensorRT is {tensorrt_version}: "
                           "re-export without it or pick a target with a newer TensorRT")
    return None


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def check_opset_and_ops(model: onnx.ModelProto, name: str, target: TargetProfile,
                        tensorrt_version: str) -> list[Problem]:
    """Opset against the parser's range and the target's ``max_opset``; every op type against the table."""
    out = []
    lo, hi = opset_range(tensorrt_version)
    hi_target = min(hi, target.max_opset)
    opset = next((int(i.version) for i in model.opset_import if i.domain in _ONNX_DOMAINS), None)
    if opset is None:
        out.append(Problem(name, "declares no ai.onnx opset: is it an ONNX model?"))
    elif not lo <= opset <= hi_target:
        out.append(Problem(name, f"uses ONNX opset {opset}; target {target.name} (TensorRT {tensorrt_version}) "
                                 f"parses opsets {lo}..{hi_target}: re-export with `--opset {hi_target}`"))
    seen: dict[tuple[str, str], int] = {}
    for node in _nodes(model.graph):
        key = (node.domain, node.op_type)
        seen[key] = seen.get(key, 0) + 1
    for (domain, op), count in sorted(seen.items()):
        p = op_problem(op, domain, tensorrt_version)
        if p is not None:
            out.append(Problem(name, f"{p.what} ({count} node(s))", p.severity))
    return out


def _external_entries(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    from onnx import AttributeProto, TensorProto

    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            yield t
    for node in _nodes(model.graph):
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR and attr.t.data_location == TensorProto.EXTERNAL:
                yield attr.t


def _tensor_nbytes(t: onnx.TensorProto) -> int | None:
    from onnx import helper

    try:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    n = 1
    for d in t.dims:
        n *= int(d)
    return n * itemsize


def check_external_data(model: onnx.ModelProto, name: str, folder: Path) -> list[Problem]:
    """The external-data rules TensorRT's parser applies, for every externally stored tensor."""
    out: list[Problem] = []
    sizes: dict[str, int | None] = {}
    for t in _external_entries(model):
        entry = {e.key: e.value for e in t.external_data}
        bad_keys = sorted(set(entry) - set(EXTERNAL_KEYS))
        if bad_keys:
            out.append(Problem(name, f"tensor {t.name}: external-data key(s) {bad_keys} are not accepted by "
                                     f"TensorRT's parser (allowed: {', '.join(EXTERNAL_KEYS)}): re-export"))
        loc = entry.get("location", "")
        parts = PurePosixPath(loc.replace("\\", "/")).parts
        if not loc or loc.startswith(("/", "\\")) or ".." in parts or len(parts) != 1:
            out.append(Problem(name, f"tensor {t.name}: external-data location {loc!r} must be a bare file name "
                                     "beside the ONNX file (TensorRT refuses '..' and resolves paths beside it)"))
            continue
        if loc not in sizes:
            path = folder / loc
            sizes[loc] = path.stat().st_size if path.is_file() else None
        file_size = sizes[loc]
        if file_size is None:
            out.append(Problem(name, f"tensor {t.name}: external-data file {loc} is missing from the folder"))
            continue
        try:
            offset, length = int(entry.get("offset", "0")), int(entry["length"]) if "length" in entry else None
        except ValueError:
            out.append(Problem(name, f"tensor {t.name}: external-data offset/length are not integers: {entry}"))
            continue
        want = _tensor_nbytes(t)
        if length is None:
            out.append(Problem(name, f"tensor {t.name}: external data has no 'length' (TensorRT would then read "
                                     f"the rest of {loc}, {file_size - offset} bytes, not the tensor's {want})"))
        elif want is not None and length != want:
            out.append(Problem(name, f"tensor {t.name}: external-data length {length} != the tensor's "
                                     f"{want} bytes ({list(t.dims)})"))
        elif offset < 0 or offset + length > file_size:
            out.append(Problem(name, f"tensor {t.name}: bytes {offset}..{offset + length} lie outside {loc} "
                                     f"({file_size} bytes)"))
    return out


def check_types(model: onnx.ModelProto, name: str) -> list[Problem]:
    """Strict shape/type inference: an FP16/FP32 mix that strongly typed builds reject is an error."""
    from onnx import shape_inference

    try:
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Problem(name, f"strict ONNX type/shape inference fails (a strongly typed TensorRT build "
                              f"rejects it too): {first}")]
    return []


def check_io(model: onnx.ModelProto, name: str, entry: Mapping[str, Any], target: TargetProfile,
             batch_cap: int | None) -> list[Problem]:
    """One input named as the manifest says, whose batch dimension the target's profile can vary."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    want = str(((entry.get("inputs") or [{}])[0]).get("name", "input"))
    if [v.name for v in inputs] != [want]:
        return [Problem(name, f"graph inputs {[v.name for v in inputs]}; the manifest promises one input "
                              f"'{want}': re-export the folder")]
    lo = target.batch_min if batch_cap is None else min(target.batch_min, batch_cap)
    hi = target.batch_max if batch_cap is None else min(target.batch_max, batch_cap)
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        return [Problem(name, f"input {want} has no shape: TensorRT needs its rank for the optimisation profile")]
    batch = dims[0]
    if batch.HasField("dim_value") and (lo, hi) != (batch.dim_value, batch.dim_value):
        return [Problem(name, f"input {want} has a fixed batch {batch.dim_value} but target {target.name}'s "
                              f"profile varies it over {lo}..{hi}: export with a dynamic batch")]
    return []


def check_dla(ops: set[str], target: TargetProfile) -> list[Problem]:
    """Op types the DLA cannot run: errors without ``gpu_fallback``, else a warning (they run on the GPU)."""
    off = sorted(ops - set(table.DLA_OPS)) if target.uses_dla else []
    if not off:
        return []
    msg = f"{len(off)} op type(s) cannot run on DLA core {target.dla_core}: {', '.join(off)}"
    if target.gpu_fallback:
        return [Problem("target", msg + " (they fall back to the GPU)", "warning")]
    return [Problem("target", msg + f"; target {target.name} has dla.gpu_fallback false, so the build fails: "
                                    "set gpu_fallback: true or use a GPU target")]


def check_folder(folder: str | Path, target: str | Path | TargetProfile, *, tensorrt_version: str | None = None,
                 configs: str | Iterable[int] | None = None) -> CheckResult:
    """Everything TensorRT would reject about ``folder`` for ``target`` (see the module docstring).

    Args:
        folder: an engine folder written by ``snnet-export export``.
        target: a built-in target name, a YAML profile path or a :class:`TargetProfile`.
        tensorrt_version: the TensorRT to check against (default: the target's ``min_tensorrt``).
        configs: stitch ids to check, ``"0,3,10-20"`` or ints (default: every exported one).

    Raises:
        ManifestError: the folder has no readable manifest. TargetError: unknown target.
        ConfigError: a selection that names ids not exported into the folder.
    """
    import onnx

    from ..engine_folder.manifest import load_manifest
    from ..selection import select_ids

    folder = Path(folder)
    manifest = load_manifest(folder)
    prof = load_target(target)
    version = tensorrt_version or prof.min_tensorrt
    exported = {int(e["id"]): e for e in manifest.get("configs", [])}
    entries = [exported[i] for i in select_ids(configs, exported, where="this folder's exports")]
    cap = manifest.get("batch_max") if isinstance(manifest.get("batch_max"), int) else None
    problems: list[Problem] = []
    ops: set[str] = set()
    files = []
    for entry in entries:
        name = str(entry["onnx"])
        path = folder / name
        if not path.is_file():
            problems.append(Problem(name, "is missing: re-run `snnet-export export`"))
            continue
        files.append(name)
        model = onnx.load(str(path), load_external_data=False)
        ops.update(n.op_type for n in _nodes(model.graph))
        problems += check_opset_and_ops(model, name, prof, version)
        problems += check_external_data(model, name, folder)
        problems += check_types(model, name)
        problems += check_io(model, name, entry, prof, cap)
    problems += check_dla(ops, prof)
    if cap is not None and cap < prof.batch_max:
        problems.append(Problem("target", f"the export's batch_max {cap} is below target {prof.name}'s batch max "
                                          f"{prof.batch_max}: engines take batch <= {cap}", "warning"))
    return CheckResult(folder=folder, target=prof.name, tensorrt_version=version, files=tuple(files),
                       problems=tuple(problems))


def require_clean(result: CheckResult) -> None:
    """Raise :class:`CheckError` listing every error of ``result`` (``build`` calls this first)."""
    if result.ok:
        return
    lines = "; ".join(f"{p.where}: {p.what}" for p in result.errors[:8])
    more = len(result.errors) - 8
    raise CheckError(f"TensorRT would reject {result.folder} for target {result.target} (TensorRT "
                     f"{result.tensorrt_version}): {lines}" + (f"; ... and {more} more" if more > 0 else "")
                     + f". Run `snnet-export check {result.folder} --target {result.target}` for the full list")
