"""The loaded engine folder behind the server, and its reload.

:class:`EngineHolder` owns one :class:`Engine` (a Selector with every frontier stitch resident on
one weight copy, plus its :class:`~.policy.SloPolicy`). :meth:`EngineHolder.reload` opens the
folder again *beside* the running one (the folder path is resolved again, so a symlink flipped to
a new version is followed), warms every stitch up, checks the input/output shapes still match the
Triton model, and only then swaps it in between two batches; the old one is closed after the swap.
Nothing is dropped: batches keep running on the old version while the new one loads. A failed
reload logs one line and the old version keeps serving.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ServeError, first_line
from ..runtime.selector import Selector
from .options import ServeOptions
from .policy import QueueClock, ServedCounter, SloPolicy
from .requests import Item, RequestError, item_from_request

log = logging.getLogger(__name__)

INPUT = "input"
#: the key an error response carries its one-line message under (see :mod:`.server`)
ERROR_KEY = "__snnet_error__"

Response = dict[str, NDArray[Any]]


def error_response(message: str) -> Response:
    """A response the patched PyTriton proxy turns into this request's error status."""
    return {ERROR_KEY: np.frombuffer(message.encode("utf-8"), dtype=np.uint8)}


@dataclass
class Engine:
    """One loaded version of the folder."""

    folder: Path  # resolved
    selector: Selector
    policy: SloPolicy
    chw: tuple[int, ...]
    classes: int
    loaded_at: str

    def close(self) -> None:
        self.selector.close()


def pinnable(sel: Selector) -> list[int]:
    """Stitch ids a request may pin: the resident ones; with a memory budget, every profiled stitch
    (one not resident loads on its first call, evicting the least recently used)."""
    return sorted(sel.candidates) if sel.residency is not None else sel.resident


def open_engine(folder: Path, options: ServeOptions) -> Engine:
    """Open ``folder`` (resolved), check the pinned/fixed stitch, warm every resident stitch up."""
    resolved = Path(os.path.realpath(folder))
    sel = Selector(resolved, backend="ort" if options.max_resident_mb is not None else "auto",
                   resident=options.resident, latency_stat="p99", threads=options.threads,
                   max_resident_mb=options.max_resident_mb, hold=False)  # the policy has its own hysteresis
    try:
        if options.stitch is not None and options.stitch not in pinnable(sel):
            raise ServeError(f"--stitch {options.stitch} is not a resident stitch of {resolved}; "
                             f"resident: {pinnable(sel)}")
        chw = tuple(int(d) for d in sel.manifest["input_shape"])
        classes = int(sel.manifest["num_classes"])
        warm = np.zeros((1, *chw), np.float32)
        for sid in sel.resident:  # first runs allocate; also proves every stitch runs before we serve it
            y = sel.run(warm, stitch=sid)
            if y.shape != (1, classes):
                raise ServeError(f"stitch {sid} of {resolved} returns {list(y.shape)}, expected [1, {classes}]")
    except Exception:
        sel.close()
        raise
    policy = SloPolicy(sel, options.slo_ms, options.overhead_ms, fixed=options.stitch)
    return Engine(resolved, sel, policy, chw, classes, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class EngineHolder:
    """The engine the server runs now, its batch loop, and its reload (see module docstring)."""

    def __init__(self, folder: str | Path, options: ServeOptions) -> None:
        self.folder = Path(folder)
        self.options = options
        self.current = open_engine(self.folder, options)
        self.max_batch = options.max_batch or max(self.current.policy._batches)
        self.counter = ServedCounter()
        self.queue = QueueClock(options.max_queue_delay_ms / 1e3, self.max_batch)
        self._lock = threading.Lock()  # held while a batch runs and while swapping engines
        self._reloading = threading.Lock()
        self._running = False
        self._last_end = time.monotonic()

    def reload(self) -> bool:
        """Open the folder again and swap it in; ``False`` (one log line, old version kept) on failure."""
        if not self._reloading.acquire(blocking=False):
            log.warning("reload already in progress; ignoring this request")
            return False
        try:
            old = self.current
            try:
                new = open_engine(self.folder, self.options)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
                log.error("reload of %s failed, still serving the version loaded at %s: %s",
                          self.folder, old.loaded_at, first_line(exc))
                return False
            if (new.chw, new.classes) != (old.chw, old.classes):
                new.close()
                log.error("reload of %s failed, still serving the version loaded at %s: input %s -> %d classes "
                          "differs from the served model's %s -> %d (restart the server to change shapes)",
                          self.folder, old.loaded_at, list(new.chw), new.classes, list(old.chw), old.classes)
                return False
            with self._lock:
                self.current = new
            old.close()
            log.info("reloaded %s (now %s, stitches %s)", self.folder, new.folder, new.selector.resident)
            return True
        finally:
            self._reloading.release()

    def close(self) -> None:
        with self._lock:
            self.current.close()

    def infer(self, requests: Sequence[Any]) -> list[Response]:
        """PyTriton's inference callable: one batch of requests in, one response (or error) per request out."""
        with self._lock:
            self._running = True
            start = time.perf_counter()
            queue_s = self.queue.started(start)
            try:
                out = self._serve(self.current, requests, queue_s, start)
            except Exception as exc:  # noqa: BLE001 - never a traceback to the client, never a dead server
                msg = f"the server could not run this batch: {first_line(exc)}"
                log.error("%s (%d request(s))", msg, len(requests))
                self.counter.add_errors(len(requests))
                out = [error_response(msg) for _ in requests]
            end, items = time.perf_counter(), sum(_images(r) for r in requests)
            self.queue.finished(start, end, items)
            self.current.policy.finished(start, end, self.queue.pipeline_gap, items >= self.max_batch, items)
            self._running, self._last_end = False, time.monotonic()
            return out

    def idle_s(self) -> float:
        """Seconds since the last batch ended (0.0 while one runs)."""
        return 0.0 if self._running else time.monotonic() - self._last_end

    def _serve(self, engine: Engine, requests: Sequence[Any], queue_s: float, start: float) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        groups: dict[int | None, list[tuple[int, Item]]] = {}
        resident = pinnable(engine.selector)
        for i, req in enumerate(requests):
            try:
                item = item_from_request(req.data, req.parameters, INPUT, engine.chw, resident)
            except RequestError as exc:
                out[i] = error_response(str(exc))
                continue
            groups.setdefault(item.stitch, []).append((i, item))
        free = groups.pop(None, [])
        for pinned, members in groups.items():
            self._run_group(engine, members, pinned, out)
        if free:
            budgets = [it.max_latency_ms for _, it in free if it.max_latency_ms is not None]
            items = sum(len(it.x) for _, it in free)
            waited = queue_s + time.perf_counter() - start  # + this batch's checks and pinned groups
            engine.policy.choose(items, waited, min(budgets) if budgets else None, now=start)
            self._run_group(engine, free, None, out)
        errors = sum(ERROR_KEY in r for r in out if r is not None)
        if errors:
            self.counter.add_errors(errors)
        return [r if r is not None else error_response("internal error: no response") for r in out]

    def _run_group(self, engine: Engine, members: list[tuple[int, Item]], stitch: int | None,
                   out: list[Response | None]) -> None:
        x = members[0][1].x if len(members) == 1 else np.concatenate([it.x for _, it in members])
        try:
            sid, logits = engine.policy.run(x, stitch)
        except Exception as exc:  # noqa: BLE001 - a failed run answers its requests, never the process
            msg = f"stitch {stitch if stitch is not None else engine.selector.current} failed: {first_line(exc)}"
            log.error("%s (%d request(s))", msg, len(members))
            for i, _ in members:
                out[i] = error_response(msg)
            return
        at = 0
        for i, it in members:  # split the batch back into its requests, in order
            n = len(it.x)
            out[i] = {"logits": logits[at:at + n], "stitch": np.full((n, 1), sid, np.int32)}
            at += n
        self.counter.add(sid, len(members), len(x))


def _images(request: Any) -> int:
    x = request.data.get(INPUT) if hasattr(request, "data") else None
    return int(x.shape[0]) if isinstance(x, np.ndarray) and x.ndim >= 1 else 0


def stats_line(counter: ServedCounter, engine: Engine) -> str:
    """One log line: requests and images served per stitch, errors, the current stitch and correction."""
    snap: Mapping[str, Any] = counter.snapshot()
    per = ", ".join(f"{sid}: {n} req/{snap['images'][sid]} img" for sid, n in snap["requests"].items()) or "none"
    return (f"served per stitch {{{per}}}; errors {snap['errors']}; current stitch {engine.selector.current}, "
            f"switches {engine.policy.switches}, correction {engine.selector.correction:.2f}")
