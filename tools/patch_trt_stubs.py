"""Fix the generation bugs of ``tensorrt-stubs`` 10.13 so mypy can parse them.

Usage: ``python tools/patch_trt_stubs.py DIR`` where DIR is the ``--target`` folder the stubs were
installed into (``.venv/trt-stubs`` in the Makefile). The stubs as published are not valid Python:

* some methods name a parameter ``in`` (a keyword): renamed to ``in_``;
* ``INetworkDefinition.add_scale_nd(..., channel_axis: int)`` puts a parameter without a default
  after parameters with defaults: such parameters get ``= ...``.

Only ``def`` lines are touched (docstrings keep their text). Running it twice changes nothing.
Every patched file must then parse with :func:`ast.parse`; the script exits 1 if one does not.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

_DEF = re.compile(r"^(?P<head>\s*def\s+\w+\()(?P<params>.*)(?P<tail>\)\s*(->.*)?:\s*(\.\.\.)?\s*)$")
_IN_PARAM = re.compile(r"^(\s*)in(\s*[:=,]|\s*$)")


def _split_params(params: str) -> list[str]:
    """Split a parameter list at top-level commas (brackets nest)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(params):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    parts.append(params[start:])
    return parts


def _fix_params(params: str) -> str:
    parts = _split_params(params)
    seen_default = False
    fixed = []
    for part in parts:
        part = _IN_PARAM.sub(r"\1in_\2", part)
        bare = part.strip()
        if bare in ("*", "/") or bare.startswith("*"):
            seen_default = seen_default and bare == "/"
        elif "=" in bare:
            seen_default = True
        elif seen_default and bare:
            part = f"{part.rstrip()} = ..."
        fixed.append(part)
    return ",".join(fixed)


def patch_text(text: str) -> str:
    """Return ``text`` with every ``def`` line's parameter list fixed."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _DEF.match(body)
        if m:  # keep the line ending as found (the 10.13 stubs use CRLF)
            fixed = m.group("head") + _fix_params(m.group("params")) + m.group("tail")
            line = fixed + line[len(body):]
        out.append(line)
    return "".join(out)


def patch_dir(root: Path) -> tuple[list[Path], list[str]]:
    """Patch every ``.pyi`` under ``root``; return (changed files, files that still do not parse)."""
    changed, broken = [], []
    for path in sorted(root.rglob("*.pyi")):
        with open(path, encoding="utf-8", newline="") as f:  # newline="": no CRLF translation
            old = f.read()
        new = patch_text(old)
        if new != old:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(new)
            changed.append(path)
        try:
            ast.parse(new, filename=str(path))
        except SyntaxError as exc:
            broken.append(f"{path}:{exc.lineno}: {exc.msg}")
    return changed, broken


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: patch_trt_stubs.py STUBS_DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    if not (root / "tensorrt_bindings").is_dir():
        print(f"{root} holds no tensorrt_bindings stubs; install them with "
              f"`pip install --no-deps --target {root} tensorrt-stubs==10.13.0.35.1`", file=sys.stderr)
        return 1
    changed, broken = patch_dir(root)
    for path in changed:
        print(f"patched {path}")
    for line in broken:
        print(f"still not valid Python: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
