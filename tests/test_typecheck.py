"""The mypy configuration (setup.cfg): whole package, --strict's flags on the deploy side, no blanket ignores.

`make typecheck` runs mypy itself (part of `make test`); these tests keep the configuration from
drifting: a flag that a later mypy adds to --strict, a module left out of the strict section, or an
``ignore_errors`` on our own code fails here.
"""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ("snnet_export.engine_folder.*", "snnet_export.engine_build.*", "snnet_export.runtime.*",
          "snnet_export.selection", "snnet_export.fileio", "snnet_export.errors")


def _config() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _strict_section(cfg: configparser.ConfigParser) -> tuple[list[str], configparser.SectionProxy]:
    for name in cfg.sections():
        if name.startswith("mypy-") and "snnet_export.runtime.*" in name:
            return name[len("mypy-"):].split(","), cfg[name]
    raise AssertionError("setup.cfg has no [mypy-...] section for the deploy side")


def _strict_flags() -> set[str]:
    """The flags `mypy --strict` turns on, read from this mypy's own --help."""
    text = subprocess.run([sys.executable, "-m", "mypy", "--help"], capture_output=True, text=True,
                          check=True).stdout
    block = text[text.index("--strict "):]
    block = block[block.index("enables the following flags:"):block.index("\n  --", 1)]
    return set(re.findall(r"--([a-z-]+)", re.sub(r"-\s*\n\s*", "-", block)))


def test_whole_package_is_checked():
    cfg = _config()
    assert cfg["mypy"]["files"].strip() == "snnet_export"
    assert cfg.getboolean("mypy", "warn_unused_ignores")
    assert "ignore-without-code" in cfg["mypy"]["enable_error_code"]


def test_deploy_side_has_every_strict_flag():
    cfg = _config()
    modules, section = _strict_section(cfg)
    assert set(DEPLOY) <= set(modules)
    flags = _strict_flags()
    assert "disallow-untyped-defs" in flags and "warn-return-any" in flags  # the parse found the list
    for flag in flags:
        if flag.startswith("no-"):  # --no-implicit-reexport: implicit_reexport = False
            key, want = flag[3:].replace("-", "_"), False
        else:
            key, want = flag.replace("-", "_"), True
        where = section if key in section else cfg["mypy"]
        assert key in where, f"--strict's --{flag} is not set for the deploy side in setup.cfg"
        assert where.getboolean(key) is want, f"--{flag}: {key} = {where[key]}"


def test_no_blanket_ignores_for_our_modules():
    cfg = _config()
    for name in cfg.sections():
        if name.startswith("mypy-") and "snnet_export" in name:
            assert "ignore_errors" not in cfg[name], f"[{name}] silences a whole module"
    bare = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "snnet_export").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"type:\s*ignore(?!\[)", line)]
    assert not bare, f"type: ignore without an error code: {bare}"
