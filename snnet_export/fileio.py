"""Small file helpers: atomic writes and hashing."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import first_line


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A crash or Ctrl-C inside the block leaves no partial ``path`` (the temp file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


#: a family or target YAML is a few KiB; anything near this is not one
YAML_MAX_BYTES = 1 << 20
#: aliases (``*name``) a document may use, and nodes it may expand to with aliases followed
YAML_MAX_ALIASES = 64
YAML_MAX_NODES = 100_000


def _bounded_loader() -> Any:
    """A ``yaml.SafeLoader`` that counts aliases and refuses alias bombs before constructing."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > YAML_MAX_ALIASES:
                    raise yaml.YAMLError(f"more than {YAML_MAX_ALIASES} aliases (refusing a possible alias bomb)")
            return super().compose_node(parent, index)

    # PyYAML resolves on/off/yes/no to booleans (YAML 1.1); keep only true/false as booleans so
    # `nearest: no` is the string "no" and the schema check refuses it instead of guessing
    BoundedLoader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    BoundedLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))
    return BoundedLoader


def _expanded_nodes(node: Any, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (shared nodes counted once each use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once
    children = node.value if isinstance(node.value, list) else []
    total = 1
    for child in children:
        for part in (child if isinstance(child, tuple) else (child,)):
            total += _expanded_nodes(part, memo)
            if total > YAML_MAX_NODES:
                break
    memo[key] = total
    return total


def read_json(path: str | Path, what: str, error: type[Exception], fix: str) -> Any:
    """Parse a JSON file the tool wrote (manifest, profile); unreadable, binary or invalid JSON raises
    ``error`` in one line naming ``what``, the path and ``fix`` (what the user should do)."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what}{path} is not readable JSON ({first_line(exc, 120)}): {fix}") from None


def read_yaml(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse a YAML file through the one bounded reader; every problem raises ``error`` as one line.

    Refuses a missing, oversized, binary or invalid file and alias bombs (more than
    ``YAML_MAX_ALIASES`` aliases or ``YAML_MAX_NODES`` nodes once expanded); only ``true``/``false``
    are booleans (``yes``/``no``/``on``/``off`` stay strings, so a schema check can refuse them).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    if path.stat().st_size > YAML_MAX_BYTES:
        raise error(f"{what} {path} is {path.stat().st_size} bytes; a {what} is a small YAML file "
                    f"(at most {YAML_MAX_BYTES} bytes)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a text file (not UTF-8): expected YAML") from None
    if "\0" in text:
        raise error(f"{what} {path} is not a text file (NUL bytes): expected YAML")
    loader = _bounded_loader()(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > YAML_MAX_NODES:
            raise yaml.YAMLError(f"expands to more than {YAML_MAX_NODES} nodes (refusing a possible alias bomb)")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise error(f"{what} {path} is not valid YAML{where}: "
                    f"{getattr(exc, 'problem', None) or first_line(exc)}") from None
    finally:
        loader.dispose()


def check_writable(path: str | Path, what: str, error: type[Exception], *, folder: bool) -> None:
    """Refuse, before any long work, an output ``path`` this process cannot create or write.

    ``folder``: ``path`` is a directory to create or write into; else a file to create or replace.
    """
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise error(f"{what} {path} exists and is not a folder: choose a folder path")
        probe = path if path.exists() else _existing_parent(path)
    else:
        if path.exists() and (path.is_dir() or not path.is_file()):
            raise error(f"{what} {path} is not a regular file (a folder or device): choose a file path")
        probe = path.parent if path.parent.exists() else _existing_parent(path)
        if path.exists() and not os.access(path, os.W_OK):
            raise error(f"{what} {path} is not writable: check its permissions or choose another path")
    if not probe.is_dir():
        raise error(f"{what} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise error(f"{what} {path}: cannot write in {probe} (permission denied or read-only); "
                    "choose another path")


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")
