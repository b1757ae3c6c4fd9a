"""Write side of the shared weight file: content-addressed, append-only, aligned.

Every initializer of every stitch graph is keyed by (dtype, shape, SHA-256 of its bytes), not by
name (the exporter's optimiser gives folded tensors graph-dependent names), and written once.
Tensors of at least 1 MiB start at 64 KiB boundaries (memory-mappable on every OS, like onnx's own
external-data writer); smaller ones at 64-byte boundaries, placed in the padding gaps that
alignment left when one fits, so padding costs next to nothing. The manifest's tensor table is the
commit record: on reopening, bytes past the last recorded tensor (left by a crash) are cut off, and
gap bytes no recorded tensor owns are free again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import onnx
from onnx import TensorProto, numpy_helper

ALIGNMENT = 1 << 16
ALIGN_THRESHOLD = 1 << 20
SMALL_ALIGNMENT = 64
INLINE_MAX_BYTES = 256  # scalars and shape vectors stay inside the graph

_DTYPE_NAMES = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
    TensorProto.BFLOAT16: "bfloat16", TensorProto.INT64: "int64", TensorProto.INT32: "int32",
    TensorProto.INT8: "int8", TensorProto.UINT8: "uint8", TensorProto.BOOL: "bool",
}


def weight_file_name(precision: str) -> str:
    return f"weights.{precision}.bin"


def _tensor_bytes(t: TensorProto) -> bytes:
    if t.HasField("raw_data"):
        return t.raw_data
    return numpy_helper.to_array(t).tobytes()


class WeightStore:
    """Append-only, deduplicating writer of one weight file.

    Args:
        path: the weight file (created if missing).
        tensors: the committed tensor table from the manifest (empty for a new file).
    """

    def __init__(self, path: str | Path, tensors: Iterable[dict[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.tensors: list[dict[str, Any]] = [dict(t) for t in tensors]
        self._index = {(t["dtype"], tuple(t["shape"]), t["sha256"]): i for i, t in enumerate(self.tensors)}
        end = max((t["offset"] + t["length"] for t in self.tensors), default=0)
        self._gaps = _free_gaps(self.tensors)
        mode = "r+b" if self.path.exists() else "w+b"
        self._f = open(self.path, mode)
        if os.fstat(self._f.fileno()).st_size != end:
            self._f.truncate(end)  # drop bytes of an interrupted run that no manifest records
        self.size = end
        self.committed = (end, len(self.tensors))
        self.bad: set[int] = set()  # recorded tensors whose bytes fail their SHA-256 (see revalidate)

    def revalidate(self) -> set[int]:
        """Re-hash every recorded tensor (a resumed export must not build on corrupted bytes).

        Returns the indices whose bytes fail their SHA-256; :meth:`add` rewrites those bytes in
        place when a stitch needs the tensor again, which repairs the file.
        """
        self._f.flush()
        for i, t in enumerate(self.tensors):
            self._f.seek(t["offset"])
            if hashlib.sha256(self._f.read(t["length"])).hexdigest() != t["sha256"]:
                self.bad.add(i)
        return set(self.bad)

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def __enter__(self) -> "WeightStore":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.rollback()
        self.close()

    def commit(self) -> None:
        """Mark everything written so far as recorded (call after the manifest is saved)."""
        self.flush()
        self.committed = (self.size, len(self.tensors))

    def rollback(self) -> None:
        """Forget tensors added since the last :meth:`commit` and cut the file back."""
        size, count = self.committed
        if self.size == size and len(self.tensors) == count:
            return
        del self.tensors[count:]
        self._index = {(t["dtype"], tuple(t["shape"]), t["sha256"]): i for i, t in enumerate(self.tensors)}
        self._gaps = _free_gaps(self.tensors)
        self._f.truncate(size)
        self.size = size

    def add(self, data: bytes, dtype: str, shape: tuple[int, ...]) -> int:
        """Store ``data`` once; returns its index in the tensor table."""
        digest = hashlib.sha256(data).hexdigest()
        key = (dtype, tuple(shape), digest)
        if key in self._index:
            index = self._index[key]
            if index in self.bad:  # recorded but corrupted: write the right bytes back in place
                self._f.seek(self.tensors[index]["offset"])
                self._f.write(data)
                self.bad.discard(index)
            return index
        align = ALIGNMENT if len(data) >= ALIGN_THRESHOLD else SMALL_ALIGNMENT
        offset = self._fit_in_gap(len(data), align)
        if offset is None:
            offset = -(-self.size // align) * align
            if offset > self.size:
                self._gaps.append((self.size, offset))
            self._f.seek(self.size)
            self._f.write(b"\0" * (offset - self.size))
            self.size = offset + len(data)
        self._f.seek(offset)
        self._f.write(data)
        self.tensors.append({"offset": offset, "length": len(data), "dtype": dtype,
                             "shape": list(shape), "sha256": digest})
        self._index[key] = len(self.tensors) - 1
        return self._index[key]

    def _fit_in_gap(self, length: int, align: int) -> int | None:
        """Best-fit placement of ``length`` bytes inside an alignment gap; updates the gap list."""
        best = None
        for i, (start, end) in enumerate(self._gaps):
            offset = -(-start // align) * align
            if offset + length <= end and (best is None or end - start < best[2]):
                best = (i, offset, end - start)
        if best is None:
            return None
        i, offset, _ = best
        start, end = self._gaps.pop(i)
        self._gaps += [g for g in ((start, offset), (offset + length, end)) if g[1] - g[0] >= SMALL_ALIGNMENT]
        return offset

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def externalize(self, model: onnx.ModelProto) -> list[list[Any]]:
        """Move ``model``'s initializers into the store and point them at it, in place.

        Returns:
            ``[[initializer name, tensor index], ...]`` for the manifest.
        """
        location = self.path.name
        mapping: list[list[Any]] = []
        for init in model.graph.initializer:
            if init.data_location == TensorProto.EXTERNAL:
                raise ValueError(f"initializer {init.name} already points to external data")
            data = _tensor_bytes(init)
            dtype = _DTYPE_NAMES.get(init.data_type)
            if dtype is None or len(data) <= INLINE_MAX_BYTES:
                continue
            index = self.add(data, dtype, tuple(init.dims))
            rec = self.tensors[index]
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
                init.ClearField(field)
            init.data_location = TensorProto.EXTERNAL
            del init.external_data[:]
            for key, value in (("location", location), ("offset", str(rec["offset"])),
                               ("length", str(rec["length"]))):
                entry = init.external_data.add()
                entry.key, entry.value = key, value
            mapping.append([init.name, index])
        return mapping


def _free_gaps(tensors: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Byte ranges between recorded tensors that no tensor owns."""
    gaps, pos = [], 0
    for t in sorted(tensors, key=lambda t: t["offset"]):
        if t["offset"] - pos >= SMALL_ALIGNMENT:
            gaps.append((pos, t["offset"]))
        pos = max(pos, t["offset"] + t["length"])
    return gaps
