"""Check the package's import structure: no import cycles, torch-free packages stay torch-free.

Reads every module's ``import`` statements with :mod:`ast` (module level and function level
alike, since a lazy import is still a dependency) and fails on:

* a cycle between modules of the package;
* a module of a torch-free package (``TORCH_FREE``) importing torch, timm, torchvision or
  scikit-learn, or importing a package module that is not torch-free itself.

Run: ``python tools/import_graph.py [PACKAGE_DIR]`` (``make lint`` does).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

# Subpackages and top-level modules the deploy side uses; nothing in them may import torch.
TORCH_FREE = ("engine_folder", "runtime", "engine_build", "bench", "serve", "conformance", "errors", "deps", "fields",
              "fileio", "progress", "selection", "__init__")
HEAVY = {"torch", "timm", "torchvision", "sklearn"}
# Torch-free modules that may import torch lazily (inside a function) on purpose: an opt-in path that
# needs the [train] extra (bench's PyTorch-eager baseline). Their module-level imports stay torch-free.
ALLOWED_LAZY = {"bench.measure", "bench.baseline"}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or ["__init__"]
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, bool]]:
    """``[(imported module, at module level?)]``: package modules relative to ``root``, others absolute."""
    mod = module_name(path, root)
    is_pkg = path.name == "__init__.py"
    pkg_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if mod == "__init__":
        pkg_parts = []
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                up = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                base = ".".join([*up, node.module] if node.module else up)
                base = "\0" + base  # marks a package-relative name
            for a in node.names:
                out.append((f"{base}.{a.name}" if base not in ("", "\0") else (base + a.name), id(node) in top_level))
    return out


def resolve(name: str, modules: set[str]) -> str | None:
    """The package module a relative import name refers to (longest existing prefix)."""
    if not name.startswith("\0"):
        if name.startswith("snnet_export."):
            name = "\0" + name[len("snnet_export."):]
        else:
            return None
    parts = name[1:].split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return "__init__" if parts == [""] else None


def torch_free(mod: str) -> bool:
    return mod.split(".")[0] in TORCH_FREE


def main(root: Path) -> int:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems = []
    for f in files:
        mod = module_name(f, root)
        for name, top in imports_of(f, root):
            lazy_ok = not top and mod in ALLOWED_LAZY
            if torch_free(mod) and not lazy_ok and not name.startswith("\0") and name.split(".")[0] in HEAVY:
                problems.append(f"{mod} (torch-free) imports {name}")
            target = resolve(name, modules)
            if target is None or target == mod:
                continue
            if target != "__init__" and mod.startswith(target + "."):
                continue  # a module importing from its own package's __init__
            graph[mod].add(target)
            if torch_free(mod) and not torch_free(target) and not lazy_ok:
                problems.append(f"{mod} (torch-free) imports {target}, which is not torch-free")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    for p in problems:
        print(p)
    print(f"{len(modules)} modules, {sum(map(len, graph.values()))} package imports, {len(problems)} problem(s)")
    return 1 if problems else 0


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp) + [sorted(comp)[0]])

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "snnet_export")))
