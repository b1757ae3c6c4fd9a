"""Read side of the shared weight file: one memory map, verified zero-copy tensor views.

Imports only NumPy (no torch, timm, onnx or click): embedded apps use it through the selector.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import VerifyError

#: dtype names used in the manifest's tensor table -> NumPy dtypes
DTYPES: dict[str, type[np.generic] | None] = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "bfloat16": None,
    "int64": np.int64, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


def check_location(folder: Path, location: str, expected: str) -> Path:
    """Refuse an external-data location that is not exactly the folder's weight file.

    Rejects absolute paths, ``..``, sub-folders and symbolic links, so a graph can never make a
    loader read outside its folder.
    """
    if location != expected or os.path.isabs(location) or "/" in location or "\\" in location:
        raise VerifyError(f"external data location '{location}' is not this folder's weight file "
                          f"'{expected}': refusing to read outside {folder}")
    path = folder / location
    if path.is_symlink():
        raise VerifyError(f"{path} is a symbolic link: the weight file must be a regular file in {folder}")
    return path


class WeightFile:
    """The folder's weight file mapped once; each tensor is hash-checked on first use.

    Args:
        folder: the engine folder.
        weights: the manifest's ``weights`` entry (file, size, tensors).
        verify: check each tensor's SHA-256 before handing out a view (once per tensor).
    """

    def __init__(self, folder: str | Path, weights: Mapping[str, Any], verify: bool = True) -> None:
        self.folder = Path(folder)
        self.path = check_location(self.folder, weights["file"], weights["file"])
        if not self.path.is_file():
            raise VerifyError(f"weight file {self.path} is missing")
        size = self.path.stat().st_size
        if size > weights["size"]:
            raise VerifyError(f"weight file {self.path} has {size} bytes, more than the {weights['size']} "
                              "the manifest records: an export was interrupted while writing; re-run the "
                              "same `snnet-export export` command (it trims the extra bytes and resumes)")
        if size < weights["size"]:
            raise VerifyError(f"weight file {self.path} has {size} bytes; the manifest records "
                              f"{weights['size']} (truncated: restore the file or re-export)")
        self.tensors = weights["tensors"]
        self.verify = verify
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        self._checked: set[int] = set()
        self._lock = threading.Lock()

    def raw(self, index: int) -> np.ndarray[Any, Any]:
        """Bytes of tensor ``index`` as a read-only uint8 view of the map (verified)."""
        rec = self.tensors[index]
        view = self._map[rec["offset"]: rec["offset"] + rec["length"]]
        if self.verify and index not in self._checked:
            digest = hashlib.sha256(view.data).hexdigest()
            if digest != rec["sha256"]:
                raise VerifyError(f"weight file {self.path}: tensor {index} at offset {rec['offset']} "
                                  "fails its SHA-256 check (file corrupted or modified: re-export)")
            with self._lock:
                self._checked.add(index)
        return view

    def array(self, index: int) -> np.ndarray[Any, Any]:
        """Tensor ``index`` as a zero-copy NumPy view with its dtype and shape."""
        rec = self.tensors[index]
        dtype = DTYPES.get(rec["dtype"])
        if dtype is None:
            raise VerifyError(f"tensor {index} has dtype {rec['dtype']}, which NumPy cannot view")
        shape: list[int] = rec["shape"]
        return self.raw(index).view(dtype).reshape(shape)

    def verify_all(self) -> list[str]:
        """Hash every tensor; returns a list of problems (empty when all match)."""
        problems = []
        for i in range(len(self.tensors)):
            try:
                self.raw(i)
            except VerifyError as exc:
                problems.append(str(exc))
        return problems
