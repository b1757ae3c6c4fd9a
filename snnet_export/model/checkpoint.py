"""The one guarded door for checkpoint files: tensors only, never code.

Every ``.pth`` snnet-export reads (model checkpoints, training states) goes through
:func:`torch_load`, which loads with ``weights_only=True`` so a pickle that would run code is
refused, and turns every failure into one :class:`CheckpointError` line that never advises the
unsafe ``weights_only=False`` route.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointError, first_line

_STATE_KEYS = ("model", "state_dict", "model_state")
# Plain data containers that release files carry beside the weights (the training ``args``); loading
# them runs no code, so they are allowed. Anything else that is not a tensor is refused.
SAFE_GLOBALS: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [argparse.Namespace]


def torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one clear error for every failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/EOF errors of many kinds
        text = str(exc)
        if "unsupported global" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", text)
            kind = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{what} {path} holds a Python object besides tensors{kind}, which snnet-export never "
                "unpickles (it could run code). Re-save only the weights where the file was made: "
                "`torch.save({'model': model.state_dict()}, 'weights.pth')` (for an SN-Net release "
                "checkpoint `ckpt`, its ['model'] entry: `torch.save({'model': ckpt['model']}, 'weights.pth')`), "
                "and pass weights.pth") from None
        # torch's own message advises weights_only=False (the unsafe route): quote only the cause
        cause = [ln for ln in text.splitlines()
                 if ln.strip() and not any(k in ln for k in ("weights_only", "Check the documentation", "file an issue"))]
        reason = first_line(RuntimeError("\n".join(cause))) if cause else "unsupported content"
        raise CheckpointError(f"cannot read {what} {path}: not a readable PyTorch checkpoint ({reason})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A model state dict from ``{'model': sd}``, ``{'state_dict': sd}``, ``{'model_state': sd}`` or ``sd``."""
    obj = torch_load(path)
    for key in _STATE_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict ({{'model': state_dict}} of tensors expected)")
    return obj
