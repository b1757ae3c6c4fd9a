"""The README is a front door and the docs keep their promises.

- README.md stays <= 250 lines and opens with the two set-up commands; no docs page exceeds 300;
- every relative link (and ``#anchor``) in README.md and docs/*.md points at a file and heading that
  exist, and every docs page is in mkdocs.yml's nav (``make docs`` / ``make test`` also run
  ``mkdocs build --strict``, which checks the site as built);
- the quick starts work: every ``bash`` and ``python`` block under a heading that starts with
  "Quick start" in README.md and docs/quickstart.md is run, in order, in a fresh folder, on the
  tiny family with a random-weight checkpoint. The blocks' leading ``NAME=value`` lines are the
  user's settings; the test replaces their values with the tiny ones below.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def _prose(text: str, code_spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks; inline code spans removed unless ``code_spans``."""
    out, fence = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fence = not fence
            continue
        if not fence:
            out.append((n, line if code_spans else re.sub(r"`[^`]*`", "", line)))
    return out


def _slug(heading: str) -> str:
    """Python-Markdown's (and so MkDocs') toc slug of a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(2)) for _, line in _prose(path.read_text(), code_spans=True)
            if (m := HEADING.match(line))}


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the front door stays <= 250 (move text to docs/)"
    first = next(i for i, line in enumerate(lines) if FENCE.match(line))
    assert first < 15, "the set-up commands come first"
    block = lines[first + 1:lines.index("```", first + 1)]
    assert [b.split("#")[0].strip() for b in block] == ["make demo", "make test"]


def test_docs_pages_stay_small():
    long = {p.name: n for p in PAGES if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"docs pages over 300 lines (split them by task): {long}"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    missing = []
    for n, line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                missing.append(f"{page.name}:{n}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                missing.append(f"{page.name}:{n}: {target} (no heading '#{anchor}' in {dest.name})")
    assert not missing, "broken links:\n" + "\n".join(missing)


def test_every_page_is_in_the_nav():
    def files(nav) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        items = nav.values() if isinstance(nav, dict) else nav
        return set().union(*(files(item) for item in items))

    nav = files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert nav == {p.name for p in PAGES}, "pages missing from or extra in mkdocs.yml's nav"


# --- the quick starts, run -------------------------------------------------------------------------

def _quick_start_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of every bash/python block under a "Quick start" heading."""
    blocks, lang, code, inside = [], None, [], False
    for line in path.read_text().splitlines():
        m = HEADING.match(line) if lang is None else None
        if m:
            inside = m.group(2).lower().startswith("quick start")
        elif (f := FENCE.match(line)) and lang is None:
            lang, code = f.group(1), []
        elif FENCE.match(line):
            if inside and lang in ("bash", "python"):
                blocks.append((lang, "\n".join(code)))
            lang = None
        elif lang is not None:
            code.append(line)
    return blocks


def _with_settings(code: str, settings: dict[str, str]) -> str:
    """Replace the values of the block's leading ``NAME=value`` lines with ``settings``."""
    lines = code.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=\S*(\s+#.*)?", line)
        if not m:
            break
        assert m.group(1) in settings, f"quick start sets {m.group(1)}; give the test a tiny value for it"
        lines[i] = f"{m.group(1)}={settings[m.group(1)]}"
    return "\n".join(lines)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], code: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"quick start failed:\n{code}\n--- output ---\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_quick_starts_run(tmp_path: Path):
    import torch

    from snnet_export.model.snnet import snnet_from_family

    ckpt = tmp_path / "snnet.pth"  # stands in for a trained SN-Net: the tiny family, random weights
    torch.save({"model": snnet_from_family("tiny", seed=0).state_dict()}, ckpt)
    settings = {"FAMILY": "tiny", "CKPT": str(ckpt), "DATA": "digits", "CONFIGS": "0,10,50"}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done: list[str] = []
    for source in (README, DOCS / "quickstart.md"):
        for lang, code in _quick_start_blocks(source):
            if code in done:
                continue
            done.append(code)
            if lang == "bash":
                _run(["bash", "-euo", "pipefail", "-c", _with_settings(code, settings)], tmp_path, env, code)
            else:
                _run([sys.executable, "-c", code], tmp_path, env, code)
    langs = [lang for src in (README, DOCS / "quickstart.md") for lang, _ in _quick_start_blocks(src)]
    assert "bash" in langs and "python" in langs, "no quick-start blocks found to run"
    assert (tmp_path / "engines" / "my-snnet" / "report.md").exists()
