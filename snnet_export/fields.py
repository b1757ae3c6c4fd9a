"""Field checks of parsed input (JSON, YAML): one set of rules and one message form for every door.

The loaders of the engine folder's files (:mod:`.engine_folder.schema`), of target profiles
(:mod:`.engine_build.targets`) and of family specs (:mod:`.model.family`) check their fields with
:class:`Fields`, so an integer, a boolean or a choice is judged by the same rule everywhere and every
refusal reads ``FILE: FIELD: must be ..., got ...``. Each loader passes its own error class
(:class:`~.errors.VerifyError`, :class:`~.errors.TargetError`, :class:`~.errors.FamilyError`).
No torch here.
"""
from __future__ import annotations

import builtins
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^\d+(\.\d+)*\S{0,40}$")  # "10.13.0.35", "8.9", "10.13.0.35+cuda13"


class Fields:
    """Checks of the fields of one parsed file; each failure raises ``error`` naming the file and field."""

    def __init__(self, file: builtins.str | Path, error: builtins.type[Exception]) -> None:
        self.file = Path(file).name if isinstance(file, Path) else str(file)
        self.error = error

    def fail(self, where: builtins.str, msg: builtins.str) -> NoReturn:
        raise self.error(f"{self.file}: {where}: {msg}" if where else f"{self.file}: {msg}")

    def get(self, obj: Mapping[builtins.str, Any], key: builtins.str, where: builtins.str) -> Any:
        if key not in obj:
            self.fail(f"{where}{key}", "missing")
        return obj[key]

    def dict(self, value: Any, where: builtins.str) -> builtins.dict[builtins.str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {_kind(value)}")
        return value

    def list(self, value: Any, where: builtins.str) -> builtins.list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {_kind(value)}")
        return value

    def str(self, value: Any, where: builtins.str) -> builtins.str:
        if not isinstance(value, str):
            self.fail(where, f"must be a string, got {_kind(value)}")
        return value

    def int(self, value: Any, where: builtins.str, lo: builtins.int = 0, hi: builtins.int | None = None) -> builtins.int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            self.fail(where, f"must be an integer {rng}, got {value!r:.60}")
        return value

    def num(self, value: Any, where: builtins.str, lo: float = 0.0, positive: builtins.bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < lo or (positive and value <= 0):
            self.fail(where, f"must be a finite number {'>' if positive else '>='} {lo}, got {value!r:.60}")
        return float(value)

    def bool(self, value: Any, where: builtins.str) -> builtins.bool:
        if not isinstance(value, bool):
            self.fail(where, f"must be true or false, got {value!r:.60}")
        return value

    def sha(self, value: Any, where: builtins.str) -> builtins.str:
        if not isinstance(value, str) or not _HEX64.match(value):
            self.fail(where, "must be a SHA-256 hex digest")
        return value

    def version(self, value: Any, where: builtins.str) -> builtins.str:
        if not isinstance(value, str) or not _VERSION.match(value):
            self.fail(where, f"must be a version such as '10.3.0.30', got {value!r:.60}")
        return value

    def pair(self, value: Any, where: builtins.str) -> builtins.list[float]:
        """``[low, high]``: two finite numbers >= 0 (a confidence interval)."""
        if not isinstance(value, list) or len(value) != 2:
            self.fail(where, f"must be [low, high], got {value!r:.60}")
        return [self.num(v, f"{where}[{k}]") for k, v in enumerate(value)]

    def choice(self, value: Any, choices: builtins.tuple[Any, ...], where: builtins.str) -> Any:
        if value not in choices:
            self.fail(where, f"must be one of {list(choices)}, got {value!r:.60}")
        return value

    def keys(self, obj: Mapping[builtins.str, Any], allowed: builtins.set[builtins.str] | frozenset[builtins.str],
             where: builtins.str = "") -> None:
        """Refuse keys of ``obj`` outside ``allowed`` (a typo would otherwise be ignored silently)."""
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            self.fail(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")

    def unique_ids(self, items: builtins.list[Any], key: Callable[[Any], Any], where: builtins.str) -> None:
        seen: set[Any] = set()
        for item in items:
            k = key(item)
            if k in seen:
                self.fail(where, f"id {k} appears twice")
            seen.add(k)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
