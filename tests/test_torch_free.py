"""The deploy side imports without torch: every module of the torch-free packages, each in a fresh interpreter.

The list of modules is globbed from the package (not written by hand), so a new module in
``engine_folder/``, ``runtime/``, ``build/`` or ``bench/`` is covered the day it is added. The
interpreter blocks torch, timm, torchvision and scikit-learn: importing any of them fails, as it
would on a deploy-only install. ``tools/import_graph.py`` (``make lint``) checks the same rule and
import cycles statically.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "snnet_export"
TORCH_FREE_PACKAGES = ("engine_folder", "runtime", "engine_build", "bench", "serve", "conformance")
TORCH_FREE_MODULES = ("__init__", "errors", "deps", "fields", "fileio", "progress", "selection")

BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision", "sklearn"):
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, _Block())
import importlib
importlib.import_module(sys.argv[1])
heavy = [m for m in ("torch", "timm", "torchvision", "sklearn") if m in sys.modules]
assert not heavy, heavy
print("ok")
"""


def _modules() -> list[str]:
    names = [f"snnet_export.{m}" if m != "__init__" else "snnet_export" for m in TORCH_FREE_MODULES]
    for pkg in TORCH_FREE_PACKAGES:
        for path in sorted((PACKAGE / pkg).rglob("*.py")):
            parts = path.relative_to(PACKAGE).with_suffix("").parts
            names.append(".".join(("snnet_export", *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return names


def test_glob_finds_the_deploy_side():
    mods = _modules()
    assert {"snnet_export.runtime.selector", "snnet_export.engine_folder.manifest", "snnet_export.bench.report",
            "snnet_export.engine_build.plan", "snnet_export.runtime.ort.runner"} <= set(mods)
    assert len(mods) >= 25


@pytest.mark.parametrize("module", _modules())
def test_imports_without_torch(module):
    proc = subprocess.run([sys.executable, "-c", BLOCK, module], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_import_graph_has_no_cycles_and_no_torch_on_the_deploy_side():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "0 problem(s)" in proc.stdout


def test_import_graph_catches_a_cycle_and_a_torch_import(tmp_path):
    pkg = tmp_path / "snnet_export"
    for rel, text in {"__init__.py": "", "engine_folder/__init__.py": "",
                      "engine_folder/a.py": "from .b import x\n",
                      "engine_folder/b.py": "import torch\n\ndef f():\n    from .a import y\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py"), str(pkg)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "engine_folder.b (torch-free) imports torch" in proc.stdout
    assert "import cycle: engine_folder.a -> engine_folder.b -> engine_folder.a" in proc.stdout
