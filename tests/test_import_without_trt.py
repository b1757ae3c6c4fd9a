"""Importing the package, the build planner and the TensorRT modules needs no TensorRT.

Runs in fresh interpreters. When the TensorRT type stubs are installed (``.venv/trt-stubs``), they
are put on PYTHONPATH: the stubs make ``import tensorrt`` succeed as an empty namespace package,
and ``is_tensorrt_available()`` must still say False.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_folder import make_engine_folder

from snnet_export.deps import is_tensorrt_available

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / ".venv" / "trt-stubs"
pytestmark = pytest.mark.skipif(is_tensorrt_available(), reason="TensorRT is installed in this environment")

PROBE = """
import json, sys
import snnet_export, snnet_export.engine_build.engines, snnet_export.engine_build.targets, snnet_export.engine_folder.engine_records
import snnet_export.runtime.trt, snnet_export.engine_build.trt_builder, snnet_export.runtime.trt.cuda, snnet_export.runtime.trt.runner
from snnet_export.runtime.trt.runner import SharedScratch, TrtEngine
loaded = {m: m in sys.modules for m in ("tensorrt", "torch", "timm", "click", "onnx", "pycuda", "cuda")}
from snnet_export.deps import is_tensorrt_available
available = is_tensorrt_available()
try:
    import tensorrt
    importable = True
except ImportError:
    importable = False
print(json.dumps({"loaded": loaded, "available": available, "importable": importable}))
"""


def _env(with_stubs: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(STUBS)] if with_stubs and STUBS.is_dir() else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)


def test_modules_import_without_tensorrt():
    proc = _run([sys.executable, "-c", PROBE])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == {"tensorrt": False, "torch": False, "timm": False, "click": False, "onnx": False,
                             "pycuda": False, "cuda": False}
    assert out["available"] is False
    if STUBS.is_dir():  # the trap: the stubs' namespace package imports, yet is not TensorRT
        assert out["importable"] is True


def _cli(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "snnet-export"  # the installed console script
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-c", "from snnet_export.cli import main; main()", *args]


def test_cli_help_without_tensorrt():
    for args in (("--help",), ("build", "--help")):
        proc = _run(_cli(*args))
        assert proc.returncode == 0, proc.stderr
    assert "--strip-weights" in _run(_cli("build", "--help")).stdout


def test_cli_build_without_tensorrt_is_one_clear_line(tmp_path):
    folder = make_engine_folder(tmp_path / "tiny", ids=(0,))
    proc = _run(_cli("build", str(folder), "--target", "dgpu"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "needs NVIDIA TensorRT" in lines[0] and "pip install 'snnet-export[trt]'" in lines[0]
    dry = _run(_cli("build", str(folder), "--target", "jetson-orin", "--dry-run"))
    assert dry.returncode == 0 and "stitch_000.engine" in dry.stdout, dry.stderr
