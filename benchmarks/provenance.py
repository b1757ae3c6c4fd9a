"""Where a result came from: the commit it was produced at and when (UTC); shared by the native benchmarks."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stamp() -> dict[str, str]:
    """``{"commit": short hash of HEAD ("" outside a git checkout), "created": ISO 8601 UTC time}``."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"commit": commit.stdout.strip(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
