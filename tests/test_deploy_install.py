"""`pip install snnet-export` is the deploy side alone: a fresh venv without torch runs every deploy command.

Builds the wheel, installs it with the ``[plot]`` extra into a new virtual environment (from the
package registry, as a user would), checks that no torch/timm/torchvision/scikit-learn came with it,
then runs ``verify``, ``build --dry-run`` (the built-in targets must come from the installed wheel),
``bench``, ``select``, ``report`` and the ``Selector`` there, on a folder exported by the full install.
A command that needs ``[train]`` must say so in one line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snnet_export.export import stitches

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm", "scikit-learn", "nvidia-cublas")
pytestmark = pytest.mark.slow

SELECTOR = """
import json, sys, numpy as np
from snnet_export.runtime import Selector
shape = json.load(open(sys.argv[1] + "/manifest.json"))["input_shape"]
sel = Selector(sys.argv[1], resident="all")
sel.set_budget(min_throughput=1.0, batch=1)
out = sel(np.zeros((2, *shape), np.float32))
print(json.dumps({"current": sel.current, "shape": list(out.shape),
                  "torch": "torch" in sys.modules, "timm": "timm" in sys.modules}))
"""


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deploy_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("deploy")
    wheel = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                  str(work / "dist"), str(ROOT)], cwd=work)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    (whl,) = (work / "dist").glob("snnet_export-*.whl")
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=work).returncode == 0
    inst = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{whl}[plot]"], cwd=work)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "digits"
    stitches.export_stitches("digits", "random", out, configs="0-4", progress=False)
    return out


def test_deploy_install_has_no_torch(deploy_venv):
    listing = _run([str(deploy_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"], cwd=deploy_venv)
    names = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert "snnet-export" in names and "onnxruntime" in names and "matplotlib" in names
    assert not [n for n in names if n.startswith(HEAVY)], sorted(names)


def test_deploy_commands_run_without_torch(deploy_venv, exported, tmp_path):
    cli = str(deploy_venv / "bin" / "snnet-export")
    verify = _run([cli, "verify", str(exported)], cwd=tmp_path)
    assert verify.returncode == 0 and "OK: 5 stitches" in verify.stdout, verify.stderr
    plan = _run([cli, "build", str(exported), "--target", "jetson-orin", "--dry-run"], cwd=tmp_path)
    assert plan.returncode == 0 and "stitch_004.engine" in plan.stdout, plan.stderr  # targets from the wheel
    bench = _run([cli, "bench", str(exported), "--batch", "1", "--runs", "2", "--warmup", "0",
                  "--min-seconds", "0", "--threads", "1"], cwd=tmp_path)
    assert bench.returncode == 0 and "profile:" in bench.stdout, bench.stderr
    select = _run([cli, "select", str(exported), "--min-throughput", "1", "--json"], cwd=tmp_path)
    assert select.returncode == 0 and json.loads(select.stdout)["id"] in range(5), select.stderr
    report = _run([cli, "report", str(exported)], cwd=tmp_path)
    assert report.returncode == 0 and (exported / "report.md").is_file(), report.stderr
    sel = _run([str(deploy_venv / "bin" / "python"), "-c", SELECTOR, str(exported)], cwd=tmp_path)
    assert sel.returncode == 0, sel.stderr
    out = json.loads(sel.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 10] and out["torch"] is False and out["timm"] is False


def test_train_side_command_names_its_extra(deploy_venv, tmp_path):
    proc = _run([str(deploy_venv / "bin" / "snnet-export"), "export", "digits", "random", "-o", str(tmp_path / "x")],
                cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'snnet-export[train]'" in lines[0], proc.stderr
    assert not (tmp_path / "x").exists()
