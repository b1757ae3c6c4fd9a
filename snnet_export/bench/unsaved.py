"""Nothing lost at the end of a long bench: a measurement the profile write could not take is kept aside.

The profile is written atomically (:func:`..fileio.write_json_atomic`: temporary file, then
``os.replace``), so a failed write (disk full, permissions) leaves the previous profile as it was.
``keep_unsaved`` then stores this run's own measurement in a side file, beside the profile
(``.profile.<device>.json.unsaved``) or, when the folder cannot take it either, in the system's
temporary directory under a name derived from the profile's absolute path. The next ``bench`` of
that folder and device finds it (``take_unsaved``), merges it under its own fresh measurement, and
removes it once the profile is written (``drop_unsaved``). Side files are not ``profile.*.json``,
so no reader mistakes one for a profile. Imports nothing beyond the standard library and the
package's own readers.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


def side_paths(path: Path) -> list[Path]:
    """Where the unsaved measurement of profile ``path`` goes: beside it, else the temporary directory."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return [path.with_name(f".{path.name}.unsaved"),
            Path(tempfile.gettempdir()) / f"snnet-export-unsaved-{key}-{path.name}"]


def keep_unsaved(path: Path, measurement: Mapping[str, Any]) -> tuple[Path | None, str | None]:
    """Write ``measurement`` to the first side path that takes it; ``(path, None)`` or ``(None, why)``."""
    from ..fileio import write_json_atomic

    why = None
    for side in side_paths(path):
        try:
            write_json_atomic(side, dict(measurement))
            return side, None
        except OSError as exc:
            why = f"{side}: {exc.strerror or exc}"
    return None, why


def take_unsaved(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The readable side files of profile ``path`` (``[(side path, profile)]``); unreadable ones are logged."""
    from ..errors import BenchError
    from ..engine_folder.profile import read_profile

    found = []
    for side in side_paths(path):
        if side.is_file():
            try:
                found.append((side, read_profile(side)))
            except BenchError as exc:
                log.warning("ignoring the unsaved measurement %s: %s", side, exc)
    return found


def drop_unsaved(sides: list[Path]) -> None:
    """Remove side files whose measurement is now in the written profile."""
    for side in sides:
        with contextlib.suppress(FileNotFoundError):
            side.unlink()
