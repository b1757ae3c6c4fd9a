"""Progress bars on stderr (tqdm), off when stderr is not a terminal unless forced."""
from __future__ import annotations

import sys
from typing import Any, Iterable


def progress_bar(items: Iterable[Any] | None, desc: str, unit: str = "it", disable: bool = False, **kw: Any) -> Any:
    """A tqdm bar over ``items`` writing to stderr; a plain iterator wrapper when disabled."""
    import logging

    from tqdm.auto import tqdm

    root = logging.getLogger()
    quiet = bool(root.handlers) and root.getEffectiveLevel() > logging.INFO  # the CLI's -q
    disable = disable or quiet
    return tqdm(items, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True,
                leave=True, **kw)
