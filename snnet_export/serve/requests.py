"""The one door for inference requests: input tensor and parameters, checked once, one-line errors.

Triton itself refuses a wrong dtype, rank or per-item shape (the model config declares FP32
``[-1, C, H, W]``) before a request reaches Python. What passes is checked here, per request, so a
bad request fails alone and its batch-mates are served:

* an empty batch (``[0, C, H, W]``) is refused;
* non-finite values (NaN, +-inf) are refused: a stitch would return NaN logits that look like an
  answer; the check is one pass over the input, small next to any stitch;
* parameter ``stitch`` (pin a stitch id) must be an integer naming a pinnable stitch (resident, or
  any profiled one under a memory budget: :func:`.engine.pinnable`);
* parameter ``max_latency_ms`` (this request's budget, queue + compute) must be a finite positive
  number; other parameters are Triton's or the client's own and are ignored.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ServeError


class RequestError(ServeError):
    """One request cannot be served; the message goes back to its client as the error status."""


@dataclass(frozen=True)
class Item:
    """One request that came through the door."""

    x: NDArray[np.float32]  # float32 [n, C, H, W], n >= 1, finite
    stitch: int | None  # pinned stitch id
    max_latency_ms: float | None  # this request's latency budget


def _stitch(value: Any, resident: Collection[int]) -> int:
    if isinstance(value, bool):
        raise RequestError(f"parameter 'stitch' must be an integer stitch id, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise RequestError(f"parameter 'stitch' must be an integer stitch id, got {str(value)[:40]!r}") from None
    if number not in resident:
        ids = sorted(resident)
        raise RequestError(f"unknown stitch {number}: this server can pin {ids[:20]}{' ...' if len(ids) > 20 else ''}")
    return number


def _budget(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise RequestError(f"parameter 'max_latency_ms' must be a finite positive number of milliseconds, "
                           f"got {str(value)[:40]!r}")
    return number


def item_from_request(data: Mapping[str, NDArray[Any]], parameters: Mapping[str, Any] | None,
                      input_name: str, chw: tuple[int, ...], resident: Collection[int]) -> Item:
    """Check one request's input and parameters; raise :class:`RequestError` with one line."""
    x = data.get(input_name)
    if x is None:
        raise RequestError(f"input '{input_name}' is missing")
    if x.dtype != np.float32 or x.ndim != len(chw) + 1 or tuple(x.shape[1:]) != tuple(chw):
        raise RequestError(f"input '{input_name}' must be FP32 [batch, {', '.join(map(str, chw))}], "
                           f"got {x.dtype} {list(x.shape)}")
    if x.shape[0] == 0:
        raise RequestError(f"input '{input_name}' is an empty batch (shape {list(x.shape)}): send at least one image")
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(x.size - np.count_nonzero(finite))
        raise RequestError(f"input '{input_name}' has {bad} non-finite value(s) (NaN or inf) of {x.size}: "
                           "send finite pixel values")
    params = parameters or {}
    stitch = _stitch(params["stitch"], resident) if "stitch" in params else None
    budget = _budget(params["max_latency_ms"]) if "max_latency_ms" in params else None
    return Item(np.ascontiguousarray(x), stitch, budget)
