"""Progress of long loops on stderr that suits where it goes: a bar on a terminal, plain lines elsewhere.

On a terminal, :func:`progress_bar` draws a tqdm bar. Off a terminal (a log file, CI, a pipe),
tqdm's carriage-return redraws would fill the log with ``\\r`` frames, so it writes one plain line
per finished item instead (``export fp32: 3/71 stitch, 12.4 s (id 3 1.2s)``), or, for long loops
such as training steps (``every_seconds``), at most one line per that many seconds and a last one
when the loop ends; never a ``\\r``. Off entirely when disabled or when the CLI's ``-q`` raised the
log level above INFO. Every long loop of the package (export, build, bench, train, eval) uses it.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sized
from typing import IO, Any, Callable, Generic, Iterable, Iterator, TypeVar, overload

T = TypeVar("T")

TRAIN_SECONDS = 10.0  # one plain line per this many seconds for step loops (training, bench rounds)


def _quiet() -> bool:
    """True under the CLI's ``-q`` (a configured root logger above INFO)."""
    root = logging.getLogger()
    return bool(root.handlers) and root.getEffectiveLevel() > logging.INFO


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress(Generic[T]):
    """Progress of one loop; iterate it (over ``items``) or call :meth:`update` per finished item.

    Args:
        items: what the loop runs over (``None`` with ``total`` when the loop calls :meth:`update`).
        desc: the loop's name (``"export fp32"``); unit: what one item is (``"stitch"``).
        total: the number of items (default ``len(items)`` when it has one).
        enabled: ``False`` shows nothing.
        every_seconds: off a terminal, write at most one line per this many seconds (and one at
            the end) instead of one per item.
        stream: where to write (default ``sys.stderr``); tty: force the terminal decision (default:
            ``stream.isatty()``); clock: seconds, for the time-based lines (tests inject one).
    """

    def __init__(self, items: Iterable[T] | None, desc: str, unit: str = "it", total: int | None = None, *,
                 enabled: bool = True, every_seconds: float | None = None, stream: IO[str] | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.items = items
        self.desc, self.unit = desc, unit
        self.total = total if total is not None else _length(items)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and not _quiet()
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.every_seconds = every_seconds
        self.clock = clock
        self.n = 0
        self._note = ""
        self._start = self._last = clock()
        self._printed = 0  # self.n at the last plain line
        self._closed = False
        self._bar: Any = None
        if self.enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             leave=True)

    def __iter__(self) -> Iterator[T]:
        if self.items is None:
            raise TypeError(f"progress '{self.desc}' has no items to iterate: call update() instead")
        try:
            for item in self.items:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix_str(self, text: str) -> None:
        """A note about the item just finished (``id 3 1.2s``, ``loss 0.412``), shown with the count."""
        self._note = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        """``n`` more items are finished."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            now = self.clock()
            if self.every_seconds is None or now - self._last >= self.every_seconds:
                self._line(now)

    def close(self) -> None:
        """End the bar, or write the last plain line if items finished since the previous one. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n > self._printed:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        note = f" ({self._note})" if self._note else ""
        self.stream.write(f"{self.desc}: {count} {self.unit}, {now - self._start:.1f} s{note}\n")
        self.stream.flush()
        self._last, self._printed, self._note = now, self.n, ""


def _length(items: Iterable[Any] | None) -> int | None:
    return len(items) if isinstance(items, Sized) else None


@overload
def progress_bar(items: None, desc: str, unit: str = ..., disable: bool = ..., total: int | None = ...,
                 every_seconds: float | None = ...) -> Progress[None]: ...


@overload
def progress_bar(items: Iterable[T], desc: str, unit: str = ..., disable: bool = ..., total: int | None = ...,
                 every_seconds: float | None = ...) -> Progress[T]: ...


def progress_bar(items: Iterable[T] | None, desc: str, unit: str = "it", disable: bool = False,
                 total: int | None = None, every_seconds: float | None = None) -> Progress[T] | Progress[None]:
    """The progress of one loop over ``items`` (see :class:`Progress`): a bar on a terminal, lines elsewhere."""
    return Progress(items, desc, unit, total, enabled=not disable, every_seconds=every_seconds)
