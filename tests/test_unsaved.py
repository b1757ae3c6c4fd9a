"""Nothing lost at the end of a bench: a failed profile write keeps the old profile and the new measurement.

The failure is injected where the bytes hit the disk (``fileio.write_bytes_atomic`` raising ENOSPC
or EACCES for the profile only); the bench itself is real (ORT sessions on a tiny engine folder).
"""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from engine_folder import make_engine_folder

from snnet_export import fileio
from snnet_export.bench.measure import profile_from_engines
from snnet_export.bench.unsaved import side_paths
from snnet_export.engine_folder.profile import device_name, profile_path, read_profile

FAST = dict(warmup=1, runs=3, min_seconds=0.0, progress=False, threads=1, peak=False)


@pytest.fixture
def folder(tmp_path):
    out = make_engine_folder(tmp_path / "f", ids=(0, 1, 2))
    profile_from_engines(out, batches=1, configs="0,1", **FAST)
    return out


def _fail_profile_writes(monkeypatch, folder, code=errno.ENOSPC, also=()):
    real = fileio.write_bytes_atomic
    blocked = {profile_path(folder, device_name("ort"), "ort"), *also}

    def write(path, data):
        if Path(path) in blocked:
            raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Permission denied", str(path))
        return real(path, data)

    monkeypatch.setattr(fileio, "write_bytes_atomic", write)


def test_failed_write_keeps_the_profile_and_says_so_in_one_line(folder, monkeypatch):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    path = profile_path(folder, device_name("ort"), "ort")
    before = path.read_bytes()
    _fail_profile_writes(monkeypatch, folder)
    res = CliRunner().invoke(cli, ["bench", str(folder), "--batch", "1", "--configs", "2", "--runs", "3",
                                   "--warmup", "1", "--min-seconds", "0", "--threads", "1"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    line = [x for x in res.output.splitlines() if x.startswith("Error")]
    assert len(line) == 1 and "previous profile is intact" in line[0] and "No space left" in line[0]
    side = side_paths(path)[0]
    assert str(side) in line[0] and path.read_bytes() == before
    kept = read_profile(side)
    assert [(r["id"], r["batch"]) for r in kept["stitches"]] == [(2, 1)]
    monkeypatch.undo()
    # the next run merges it: its own stitch 0, the profile's 1, the unsaved 2
    merged = profile_from_engines(folder, batches=1, configs="0", **FAST)
    assert sorted(r["id"] for r in merged["stitches"]) == [0, 1, 2]
    assert json.loads(path.read_text())["stitches"] == merged["stitches"] and not side.exists()
    two = next(r for r in merged["stitches"] if r["id"] == 2)
    assert two["latency_ms"] == next(r for r in kept["stitches"])["latency_ms"]


def test_side_file_falls_back_to_the_temp_dir_and_reports_when_nothing_can_be_kept(folder, monkeypatch):
    from snnet_export.errors import BenchError

    path = profile_path(folder, device_name("ort"), "ort")
    here, tmp = side_paths(path)
    _fail_profile_writes(monkeypatch, folder, errno.EACCES, also=(here,))
    with pytest.raises(BenchError, match="previous profile is intact") as info:
        profile_from_engines(folder, batches=1, configs="2", **FAST)
    assert str(tmp) in str(info.value) and tmp.is_file() and not here.exists()
    tmp.unlink()
    _fail_profile_writes(monkeypatch, folder, errno.EACCES, also=(here, tmp))
    with pytest.raises(BenchError, match="could not be kept either"):
        profile_from_engines(folder, batches=1, configs="2", **FAST)


def test_two_failed_writes_in_a_row_keep_both_runs(folder, monkeypatch):
    """The second failed run keeps its own measurement and the first's: the side file is cumulative."""
    from snnet_export.errors import BenchError

    path = profile_path(folder, device_name("ort"), "ort")
    before = path.read_bytes()
    side = side_paths(path)[0]
    _fail_profile_writes(monkeypatch, folder)
    with pytest.raises(BenchError, match="previous profile is intact"):
        profile_from_engines(folder, batches=1, configs="2", **FAST)
    first = read_profile(side)["stitches"]
    with pytest.raises(BenchError, match="previous profile is intact"):
        profile_from_engines(folder, batches=1, configs="0", **FAST)
    kept = read_profile(side)["stitches"]
    assert path.read_bytes() == before and sorted(r["id"] for r in kept) == [0, 2]
    assert next(r for r in kept if r["id"] == 2)["latency_ms"] == first[0]["latency_ms"]
    monkeypatch.undo()
    merged = profile_from_engines(folder, batches=1, configs="1", **FAST)
    assert sorted(r["id"] for r in merged["stitches"]) == [0, 1, 2] and not side.exists()
    assert {r["id"]: r["latency_ms"] for r in merged["stitches"]}[0] == next(r for r in kept if r["id"] == 0)["latency_ms"]
