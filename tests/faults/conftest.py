"""Fixtures of the fault-injection suite: one real tiny export, copied per test to be tampered with."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from engine_folder import write_profile as shared_write_profile

REPO = Path(__file__).resolve().parents[2]
IDS = "0,1,70"  # anchor T, anchor S (ids 0-2 are the anchors) and one stitched configuration


def write_profile(folder: Path, speed: dict[int, float], batches=(1, 4)) -> dict:
    """Throughput ``speed[i] * batch`` per stitch (see :func:`engine_folder.write_profile`)."""
    return shared_write_profile(folder, speed, batches)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """A real tiny export (3 stitches, verified in ONNX Runtime) with accuracies and a profile."""
    from snnet_export.engine_folder.manifest import save_manifest
    from snnet_export.export.stitches import export_stitches

    out = tmp_path_factory.mktemp("faults") / "tiny"
    m = export_stitches("tiny", "random", out, configs=IDS, progress=False)
    for n, e in enumerate(m["configs"]):
        e["accuracy"] = {"acc1": 60.0 + 10 * n, "acc5": None, "loss": None}
    save_manifest(out, m)
    write_profile(out, {0: 900.0, 1: 500.0, 70: 300.0})
    return out


@pytest.fixture()
def folder(exported: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`exported` that a test may tamper with."""
    dst = tmp_path / "tiny"
    shutil.copytree(exported, dst)
    return dst


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """``snnet-export ARGS`` in a subprocess (the real console entry point)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "snnet_export.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def assert_clean_refusal(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, no traceback, an error of one line that contains every needle."""
    err = proc.stderr
    assert proc.returncode != 0, (proc.stdout, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
