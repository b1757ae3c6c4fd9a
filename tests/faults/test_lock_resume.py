"""Folder lock, crash-safe resume and repair of the shared weight file (real exports, real kills)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import IDS, REPO, assert_clean_refusal, run_cli
from snnet_export.engine_folder.integrity import verify_folder
from snnet_export.engine_folder.lock import LOCK_FILE, folder_lock
from snnet_export.engine_folder.manifest import load_manifest
from snnet_export.errors import ExportError, FolderBusyError, VerifyError
from snnet_export.export.stitches import export_stitches


def _export_proc(out: Path, configs: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "snnet_export.cli", "-q", "export", "tiny", "random", "-o", str(out),
                             "--configs", configs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "busy"
    with folder_lock(out, "export"):
        with pytest.raises(FolderBusyError, match=rf"another export/build is writing to .*busy \(pid {os.getpid()}"):
            with folder_lock(out, "build"):
                pass
        proc = run_cli("export", "tiny", "random", "-o", str(out), "--configs", "0")
        assert_clean_refusal(proc, "another export/build is writing to", f"pid {os.getpid()}")
    with folder_lock(out, "export"):  # released on exit: the next writer gets it
        pass


def test_two_concurrent_exports_lose_nothing(tmp_path):
    """Two processes into one folder, different ids: each either finishes or is refused; whatever
    finished is in the manifest and the folder verifies (before: corrupted tensors, lost stitches)."""
    out = tmp_path / "race"
    procs = {"0,1": _export_proc(out, "0,1"), "2,70": _export_proc(out, "2,70")}
    done = []
    for ids, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert "Traceback" not in err, err
        if p.returncode == 0:
            done += [int(i) for i in ids.split(",")]
        else:
            assert "another export/build is writing to" in err, err
    assert done, "at least one export finishes"
    assert {e["id"] for e in load_manifest(out)["configs"]} >= set(done)
    verify_folder(out)


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_during_first_stitch_then_same_command_resumes(tmp_path, seed):
    out = tmp_path / "killed"
    proc = _export_proc(out, "0,1")
    deadline = time.monotonic() + 120
    while not (out / LOCK_FILE).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 1.2))  # somewhere inside the first stitch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run_cli("-q", "export", "tiny", "random", "-o", str(out), "--configs", "0,1", timeout=300)
    assert again.returncode == 0, again.stderr  # no --force needed
    assert [e["id"] for e in load_manifest(out)["configs"]] == [0, 1]
    verify_folder(out)


def test_failed_first_stitch_leaves_a_resumable_folder(tmp_path, monkeypatch):
    import snnet_export.export.stitches as stitches

    out = tmp_path / "failed"
    real = stitches.onnx_from_stitch
    monkeypatch.setattr(stitches, "onnx_from_stitch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(ExportError, match="boom"):
        export_stitches("tiny", "random", out, configs="0", progress=False)
    monkeypatch.setattr(stitches, "onnx_from_stitch", real)
    m = export_stitches("tiny", "random", out, configs="0", progress=False)  # same call, no force
    assert [e["id"] for e in m["configs"]] == [0]


def test_corrupted_tensor_is_rehashed_and_repaired_on_resume(folder):
    m = load_manifest(folder)
    t = m["weights"]["tensors"][0]
    with open(folder / m["weights"]["file"], "r+b") as f:
        f.seek(t["offset"])
        f.write(b"\xff" * 16)
    with pytest.raises(VerifyError, match="SHA-256"):
        verify_folder(folder, check_graphs=False)
    export_stitches("tiny", "random", folder, configs=IDS, progress=False)  # before: reused the bad bytes
    verify_folder(folder)


def test_weight_file_longer_than_manifest_is_explained_then_trimmed(folder):
    from snnet_export.runtime import Selector

    m = load_manifest(folder)
    path = folder / m["weights"]["file"]
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # what a SIGKILL mid-stitch leaves
    with pytest.raises(VerifyError, match="re-run the same `snnet-export export`"):
        Selector(folder, backend="ort")
    export_stitches("tiny", "random", folder, configs=IDS, progress=False)
    assert path.stat().st_size == m["weights"]["size"]
    verify_folder(folder)
