"""The SLO policy: per batch, the most accurate frontier stitch predicted to answer within the SLO.

It is the runtime :class:`~snnet_export.runtime.Selector`'s own closed loop, fed with what the
server sees. For each batch Triton hands over:

1. :class:`QueueClock` bounds how long the batch's oldest request already waited in Triton's
   queue (the server cannot see arrival times; it sees when each batch starts and ends: a request
   still waiting arrived after the last batch that was not full was formed, since that batch
   emptied the queue; after an idle gap (longer than the batcher's delay plus the usual gap between
   batches outside this process) it waited at most that delay plus that gap);
2. the compute budget is ``min(budget - queue wait - overhead, budget / 2)``, where ``budget`` is the
   SLO or the tightest ``max_latency_ms`` of the batch's requests (they all return together). The
   half cap keeps the loop stable: the next batch's queue wait is this batch's compute;
3. ``Selector.set_budget(max_latency_ms=compute budget, batch=...)`` picks the most accurate frontier
   stitch whose predicted p99 latency fits (profiled median x the observed tail ratio of recent
   calls), switching up only with the Selector's hysteresis margin; the batch is rounded *up* to
   the next profiled batch size, so the prediction errs slow;
4. ``Selector.run_with_id`` runs the batch and records its compute time (the closed loop's input).

Under overload the fastest stitch runs and Triton's bounded queue refuses the excess.
"""
from __future__ import annotations

import bisect
import logging
import statistics
import threading
import time
import warnings
from collections import Counter, deque
import numpy as np
from numpy.typing import NDArray

from ..runtime.selector import Selector

log = logging.getLogger(__name__)

#: slack on the batcher's delay before a gap counts as idle (scheduling jitter)
IDLE_SLACK_S = 0.0005
#: the gap between two batches outside this process, until full batches have measured it
DEFAULT_PIPELINE_GAP_S = 0.003


class QueueClock:
    """Upper bound of the queue wait of each batch's oldest request, from batch start/end times.

    A batch that is not full empties Triton's queue, so every request waiting later arrived after
    that batch started (the *horizon*); a full batch may leave a backlog, so the horizon stays where
    it was and the bound grows with every further full batch, which moves the policy down until
    the queue drains. Between two batches there is always a gap outside this process (PyTriton's
    IPC, Triton's response and batching work): its median after full batches, when requests were
    certainly waiting, is the *pipeline gap*. A gap longer than the batcher's delay plus twice that
    means the server sat idle with an empty queue: the batch's requests arrived during the gap.
    """

    def __init__(self, max_queue_delay_s: float, max_batch: int) -> None:
        self.max_delay = max_queue_delay_s
        self.max_batch = max_batch
        self._prev: tuple[float, float, int] | None = None  # (start, end, items) of the last batch
        self._horizon = 0.0  # every request still waiting arrived after this time
        self._gaps: deque[float] = deque(maxlen=16)  # end -> next start after full batches

    @property
    def pipeline_gap(self) -> float:
        """Median seconds between a batch's end and the next start while requests wait."""
        return statistics.median(self._gaps) if self._gaps else DEFAULT_PIPELINE_GAP_S

    def started(self, now: float) -> float:
        """Seconds the oldest request of the batch starting at ``now`` waited (an upper bound)."""
        if self._prev is None:
            return self.max_delay
        _, end, items = self._prev
        if items >= self.max_batch:
            self._gaps.append(max(now - end, 0.0))
        gap = self.pipeline_gap
        if now - end > self.max_delay + 2 * gap + IDLE_SLACK_S:  # idle: the queue was empty at ``end``
            self._horizon = end
            return self.max_delay + gap
        return max(now - self._horizon, 0.0)

    def finished(self, start: float, end: float, items: int) -> None:
        if self._prev is None or items < self.max_batch:
            self._horizon = start
        self._prev = (start, end, items)


class SloPolicy:
    """Choose and run one stitch per batch on a resident :class:`Selector` (see module docstring).

    Args:
        selector: the folder's Selector (``latency_stat='p99'``, frontier resident).
        slo_ms: the latency objective per request.
        overhead_ms: time per request outside the model, reserved from every budget.
        fixed: serve only this stitch (no switching).
    """

    def __init__(self, selector: Selector, slo_ms: float, overhead_ms: float = 1.0,
                 fixed: int | None = None) -> None:
        self.selector = selector
        self.slo_ms = slo_ms
        self.overhead_ms = overhead_ms
        self.fixed = fixed
        self._batches = sorted(int(b) for b in selector.profile["batches"])
        self._last: int | None = None
        self.switches = 0

    def profiled_batch(self, items: int) -> int:
        """The smallest profiled batch >= ``items`` (the largest when ``items`` exceeds them all)."""
        i = bisect.bisect_left(self._batches, items)
        return self._batches[min(i, len(self._batches) - 1)]

    def compute_budget_ms(self, queue_s: float, budget_ms: float | None = None) -> float:
        """Milliseconds this batch may compute: see the module docstring, step 2."""
        total = min(self.slo_ms, budget_ms) if budget_ms is not None else self.slo_ms
        left = total - queue_s * 1e3 - self.overhead_ms
        return max(min(left, total / 2), 1e-3)

    def choose(self, items: int, queue_s: float, budget_ms: float | None = None) -> int:
        """Set the Selector's budget for this batch; returns the stitch it calls for."""
        if self.fixed is not None:
            return self.fixed
        with warnings.catch_warnings():  # "no stitch meets the budget": overload, logged on the switch below
            warnings.simplefilter("ignore")
            chosen = self.selector.set_budget(max_latency_ms=self.compute_budget_ms(queue_s, budget_ms),
                                              batch=self.profiled_batch(items))
        if chosen != self._last:
            if self._last is not None:
                self.switches += 1
            log.debug("batch of %d, queue %.1f ms: stitch %s -> %d", items, queue_s * 1e3, self._last, chosen)
            self._last = chosen
        return chosen

    def run(self, x: NDArray[np.float32], stitch: int | None = None) -> tuple[int, NDArray[np.float32]]:
        """Run ``x`` (float32 [n, C, H, W]) on ``stitch`` (pinned) or the chosen one; ``(id, logits)``."""
        if stitch is None and self.fixed is None:
            out = self.selector.run_with_id(x)  # the active stitch, timed: the closed loop's sample
            return out.stitch, out.logits
        sid = self.fixed if stitch is None else stitch
        assert sid is not None
        t0 = time.perf_counter()
        y = self.selector.run(x, stitch=sid)
        self.selector.observe(sid, len(x), time.perf_counter() - t0)
        return sid, y


class ServedCounter:
    """Requests and images served per stitch (thread-safe); what the server logs as its per-stitch metric."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[int] = Counter()
        self.images: Counter[int] = Counter()
        self.errors = 0

    def add(self, stitch: int, requests: int, images: int) -> None:
        with self._lock:
            self.requests[stitch] += requests
            self.images[stitch] += images

    def add_errors(self, n: int) -> None:
        with self._lock:
            self.errors += n

    def snapshot(self) -> dict[str, object]:
        """``{"requests": {id: n}, "images": {id: n}, "errors": n}`` (a copy)."""
        with self._lock:
            return {"requests": dict(sorted(self.requests.items())), "images": dict(sorted(self.images.items())),
                    "errors": self.errors}
