"""The one parser of stitch-id selections (``--configs 0,3,10-20``), used by every command.

Torch-free. A selection is a comma-separated list of ids and inclusive ranges; ``all`` (or no
selection at all, ``None``) means every available id. An empty selection is refused rather than
read as "all". Ranges are checked against the available ids before anything is expanded, so a
huge range costs nothing and the error stays one short line.
"""
from __future__ import annotations

import re
from typing import Iterable

from .errors import ConfigError

_PART = re.compile(r"(\d{1,9})(?:\s*-\s*(\d{1,9}))?")
_MAX_PARTS = 10_000


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``"0,3,10-20"`` -> ``[(0, 0), (3, 3), (10, 20)]``; raise :class:`ConfigError` on bad syntax."""
    if not text.strip():
        raise ConfigError("empty stitch selection: give ids like 0,3,10-20, or 'all'")
    parts = text.split(",")
    if len(parts) > _MAX_PARTS:
        raise ConfigError(f"stitch selection has {len(parts)} parts; at most {_MAX_PARTS} are accepted")
    ranges = []
    for part in parts:
        m = _PART.fullmatch(part.strip())
        if not m:
            raise ConfigError(f"bad stitch selection '{_short(part.strip())}': expected ids like 0,3,10-20")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ConfigError(f"bad stitch range '{part.strip()}': end before start")
        ranges.append((lo, hi))
    return ranges


def select_ids(selection: str | Iterable[int] | None, available: int | Iterable[int], *,
               where: str = "this family") -> list[int]:
    """The sorted unique ids ``selection`` names, each of which must be in ``available``.

    Args:
        selection: ``None`` or ``"all"`` for every available id, a text selection such as
            ``"0,3,10-20"``, or an iterable of ids.
        available: the number of ids (``n`` means ids ``0..n-1``) or the ids themselves (for
            example the stitches exported into a folder).
        where: what holds the available ids, for the error message.

    Raises:
        ConfigError: bad syntax, an empty selection, or ids that are not available.
    """
    have = list(range(available)) if isinstance(available, int) else sorted({int(i) for i in available})
    if selection is None or (isinstance(selection, str) and selection.strip().lower() == "all"):
        return have
    if isinstance(selection, str):
        ranges = parse_ranges(selection)
    else:
        ids = [_as_id(i) for i in selection]
        if not ids:
            raise ConfigError("empty stitch selection: name at least one id")
        ranges = [(i, i) for i in ids]
    present = set(have)
    top = have[-1] if have else -1
    out: set[int] = set()
    missing: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi > top or lo < 0:
            missing.append((max(lo, top + 1), hi) if lo <= top else (lo, hi))
            hi = min(hi, top)
        for i in range(lo, hi + 1):
            (out.add(i) if i in present else missing.append((i, i)))
    if missing:
        raise ConfigError(f"stitch id(s) {_short(format_ranges(missing))} are not in {where} "
                          f"(it has {format_selection(have) or 'none'})")
    return sorted(out)


def format_selection(ids: Iterable[int]) -> str:
    """Inverse of :func:`select_ids`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    return format_ranges([(i, i) for i in ids])


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in merged)


def _as_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ConfigError(f"stitch id {value!r} is not a non-negative whole number")
    return int(value)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

