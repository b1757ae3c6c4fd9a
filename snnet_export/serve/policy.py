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
3. :class:`LoadMeter` measures the model instance's *utilisation*: the fraction of the last
   ``window_s`` it was busy (each batch's time in this process plus the pipeline gap outside it);
   a full batch counts as saturated (at least 1.0: requests were left waiting). A stitch holds the
   load when its predicted utilisation, the measured one times (running stitch's throughput /
   its throughput at this batch), stays at most ``hold`` (0.8); this becomes the Selector's
   ``min_throughput``. A stitch that only answers one batch in time but cannot keep up with the
   arrivals would build a queue that misses the SLO a few batches later: the throughput floor
   moves the policy down *before* the latency shows it, and keeps it from oscillating between a
   too-slow accurate stitch and the fastest one under sustained load;
4. ``Selector.set_budget(max_latency_ms=compute budget, min_throughput=floor, batch=...)`` picks
   the most accurate frontier stitch whose predicted p99 latency fits (profiled percentile x the
   observed tail inflation) and whose throughput clears the floor; the batch is rounded *up* to the
   next profiled batch size, so the prediction errs slow. Hysteresis on the way back up: a more
   accurate stitch must clear the throughput floor with the margin ``hold / up - 1`` (predicted
   utilisation at most ``up``, 0.6; its p99 needs no margin inside a compute budget already at most
   half the SLO), and not before ``dwell_s`` (1 s) after the last down-switch;
5. ``Selector.run_with_id`` runs the batch and records its compute time (the closed loop's input).

Under overload the fastest stitch runs and Triton's bounded queue refuses the excess. Each batch's
decision is logged at DEBUG (``batch ...``: what :mod:`benchmarks.serve_load` reads back).
"""
from __future__ import annotations

import bisect
import logging
import math
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


class LoadMeter:
    """How busy the model instance was over the last ``window_s`` seconds, and on which stitches.

    Per batch it keeps the compute time in this process, the stitch and batch size, and the
    *pipeline* time before it: the gap since the previous batch ended, up to the pipeline gap
    (Triton's and PyTriton's serial work between two batches; a gap over twice that was idle). The window's
    work is expressed in images at profiled speed (compute time x the stitch's profiled images/s at
    that batch size), so that a stitch ``s`` would be busy ``work / speed(s) + pipeline`` of the
    window: right after a switch the window still holds the previous stitch's batches. After an
    idle spell the span is the time since traffic resumed (at least a third of the window).
    A full batch left requests waiting: :attr:`saturated` until a batch that is not full.
    """

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._rows: deque[tuple[float, float, float]] = deque()  # (end, images of work, pipeline s)
        self._since = 0.0  # start of the first batch after the last idle window
        self._end: float | None = None
        self.saturated = False

    def add(self, start: float, end: float, gap_s: float, full: bool, work: float) -> None:
        """A batch ran from ``start`` to ``end``; ``work`` = its compute seconds x profiled images/s."""
        if self._end is None or self._end < start - self.window_s:
            self._since = start
        gap = math.inf if self._end is None else max(start - self._end, 0.0)
        pipeline = min(gap, gap_s) if gap <= 2 * gap_s else 0.0  # a longer gap: the server sat idle
        self._rows.append((end, work, pipeline))
        self._end, self.saturated = end, full

    def window(self, now: float) -> tuple[float, float, float]:
        """``(work in images, pipeline seconds, span seconds)`` of the window ending ``now``."""
        while self._rows and self._rows[0][0] < now - self.window_s:
            self._rows.popleft()
        span = min(self.window_s, max(now - self._since, self.window_s / 3))
        return sum(r[1] for r in self._rows), sum(r[2] for r in self._rows), span


class SloPolicy:
    """Choose and run one stitch per batch on a resident :class:`Selector` (see module docstring).

    Args:
        selector: the folder's Selector (``latency_stat='p99'``, frontier resident).
        slo_ms: the latency objective per request.
        overhead_ms: time per request outside the model, reserved from every budget.
        fixed: serve only this stitch (no switching).
        hold, up: a stitch stays while its predicted utilisation is at most ``hold``; a more
            accurate one is switched to only at most ``up`` (its p99 within the compute budget).
        dwell_s: no up-switch sooner than this after a down-switch.
        window_s: the utilisation's window.
    """

    def __init__(self, selector: Selector, slo_ms: float, overhead_ms: float = 1.0,
                 fixed: int | None = None, hold: float = 0.8, up: float = 0.6, dwell_s: float = 1.0,
                 window_s: float = 1.0) -> None:
        self.selector = selector
        self.slo_ms = slo_ms
        self.overhead_ms = overhead_ms
        self.fixed = fixed
        self.hold, self.dwell_s = hold, dwell_s
        self.up_margin = hold / up - 1.0
        self.load = LoadMeter(window_s)
        self._batches = sorted(int(b) for b in selector.profile["batches"])
        self._last: int | None = None
        self._down_at = -math.inf
        self._ran: int | None = None  # the stitch that ran the batch now being served
        self.util = 0.0  # the last utilisation measured (as if on the running stitch)
        self._batch = self._batches[0]
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

    def throughput_floor(self, now: float) -> float | None:
        """Images/s (profiled, before the closed loop's correction) a stitch needs to keep its
        utilisation at most ``hold`` under the measured load (step 3); ``None`` when idle, or when
        the pipeline alone keeps the server that busy (no stitch would help: the latency decides)."""
        work, pipeline, span = self.load.window(now)
        free = self.hold * span - pipeline
        cur = self._speed(self.selector.current, self._batch)
        self.util = (work / cur + pipeline) / span if cur > 0 else 0.0
        if self.load.saturated:
            self.util = max(self.util, self.hold)
        if work <= 0.0 or free <= 0.0:
            return None
        floor = work / free / self.selector.correction
        return max(floor, cur / self.selector.correction) if self.load.saturated else floor

    def _speed(self, stitch: int, images: int) -> float:
        """Profiled images/s of ``stitch`` at the profiled batch nearest ``images``."""
        thr = self.selector.candidates[stitch].throughput
        return thr[images] if images in thr else thr[min(thr, key=lambda b: abs(b - images))]

    def choose(self, items: int, queue_s: float, budget_ms: float | None = None,
               now: float | None = None) -> int:
        """Set the Selector's budget for this batch; returns the stitch it calls for."""
        if self.fixed is not None:
            return self.fixed
        now = time.perf_counter() if now is None else now
        batch = self._batch = self.profiled_batch(items)
        latency = self.compute_budget_ms(queue_s, budget_ms)
        floor = self.throughput_floor(now)
        # hysteresis on the way up, on the throughput floor only (the compute budget is already at most
        # half the SLO); no up-switch at all during the dwell after a down-switch
        dwelling = now - self._down_at < self.dwell_s
        self.selector.hysteresis = math.inf if dwelling else self.up_margin
        self.selector.latency_hysteresis = math.inf if dwelling else 0.0
        before = self._last if self._last is not None else self.selector.current  # the server's first batch too
        with warnings.catch_warnings():  # "no stitch meets the budget": overload, logged on the switch below
            warnings.simplefilter("ignore")
            chosen = self.selector.set_budget(max_latency_ms=latency, min_throughput=floor, batch=batch)
        log.debug("batch t=%.4f items=%d queue_ms=%.2f util=%.3f budget_ms=%.2f floor=%.1f stitch=%d", now,
                  items, queue_s * 1e3, self.util, latency, floor or 0.0, chosen)
        if chosen != before:
            self.switches += 1
            cands = self.selector.candidates
            if before in cands and cands[chosen].accuracy < cands[before].accuracy:
                self._down_at = now
        self._last = chosen
        return chosen

    def finished(self, start: float, end: float, gap_s: float, full: bool, images: int) -> None:
        """Record a served batch (its time, the stitch that ran it) for the utilisation."""
        ran = self._ran if self._ran is not None else self.selector.current
        self.load.add(start, end, gap_s, full, (end - start) * self._speed(ran, images))
        self._ran = None

    def run(self, x: NDArray[np.float32], stitch: int | None = None) -> tuple[int, NDArray[np.float32]]:
        """Run ``x`` (float32 [n, C, H, W]) on ``stitch`` (pinned) or the chosen one; ``(id, logits)``."""
        if stitch is None and self.fixed is None:
            out = self.selector.run_with_id(x)  # the active stitch, timed: the closed loop's sample
            self._ran = out.stitch
            return out.stitch, out.logits
        sid = self.fixed if stitch is None else stitch
        assert sid is not None
        t0 = time.perf_counter()
        y = self.selector.run(x, stitch=sid)
        self.selector.observe(sid, len(x), time.perf_counter() - t0)
        if self._ran is None:
            self._ran = sid
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
