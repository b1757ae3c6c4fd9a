"""Every install hint names an extra that setup.cfg really defines, and the CLI gives it in one line."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from click.testing import CliRunner

from snnet_export import deps
from snnet_export.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["options.extras_require"])


def test_every_extra_in_hints_exists():
    extras = _extras()
    assert {"train", "plot", "trt", "dev"} <= extras
    assert set(deps.EXTRA_FOR.values()) <= extras
    for module in deps.EXTRA_FOR:
        assert deps.install_hint(module).startswith("pip install 'snnet-export[")


def test_deploy_side_install_requires_no_torch():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = cfg["options"]["install_requires"].lower()
    assert not any(name in required for name in ("torch", "timm", "scikit-learn", "matplotlib"))
    train = cfg["options.extras_require"]["train"].lower()
    assert all(name in train for name in ("torch", "torchvision", "timm", "scikit-learn"))


def test_missing_extra_is_one_line_from_the_cli(monkeypatch):
    import snnet_export.model.flops as flops

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(flops, "config_records", missing)
    res = CliRunner().invoke(cli, ["configs", "tiny"])
    assert res.exit_code == 1
    assert res.output.strip() == ("Error: `snnet-export configs` needs `timm`, which is not installed; install it "
                                  "with `pip install 'snnet-export[train]'`.")


def test_unknown_missing_module_is_not_disguised(monkeypatch):
    import snnet_export.model.flops as flops

    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'snnet_export.nothing'", name="snnet_export.nothing")

    monkeypatch.setattr(flops, "config_records", broken)
    res = CliRunner().invoke(cli, ["configs", "tiny"])
    assert isinstance(res.exception, ModuleNotFoundError)  # a bug of ours stays visible, not an install hint


@pytest.mark.parametrize("module", ["matplotlib", "tensorrt"])
def test_require_names_the_extra(monkeypatch, module):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == module:
            raise ImportError(f"No module named '{module}'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    monkeypatch.setattr(deps, "is_tensorrt_available", lambda: False)
    with pytest.raises(deps.MissingDependencyError, match=r"snnet-export\[(plot|trt)\]"):
        deps.require(module, "testing")
