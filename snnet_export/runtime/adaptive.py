"""Closed loop for the selector: is the device running as profiled, and if not, how much slower?

The profile was measured once; throttling, DVFS or other processes change the speed later.
``LatencyTracker`` times every call the selector serves and runs a two-state machine:

* ``NOMINAL``: the device runs as profiled. Decisions use the profile as is (factors exactly 1.0),
  so the selector serves what a fresh selector would choose for the budget.
* ``CORRECTED``: the device is measurably off its profile. Decisions use the profile times the
  observed factors (median slowdown for throughput; the observed inflation of the budgeted latency
  percentile, relative to each stitch's own profiled percentile, for latency budgets), with the
  selector's hysteresis against flapping.

Recovery: when the selector leaves a stitch because it misses the budget, the stitch it had
settled on before the step is the *home*, with the factors it ran at. Once the recent calls of
whatever stitch runs now show the device back to the home's factors, the loop *returns*: the
selector goes straight back to the home stitch (to ``NOMINAL`` and the profile's choice when the
home ran as profiled), without needing a hysteresis margin it can never see on noise. Slow stitches
left behind carry a *penalty* until then, and a return that does not hold doubles the wait
before the next one, so an apparent recovery cannot make it flap.

Algorithm (deterministic given the sequence of calls; no randomness, no clock of its own)
------------------------------------------------------------------------------------------
Profile inputs per ``(stitch s, batch b)``: ``m(s,b)`` the profiled median (ms) and ``q(s,b)`` the
profiled percentile ``stat`` (ms; ``q = m`` for ``stat="p50"`` or when not given). A batch not
profiled uses the nearest profiled batch ``nb`` of that stitch (the smaller one on a tie), scaled
linearly: ``m(s,b) = (m(s,nb) * b) / nb`` (same for ``q``). Doubles throughout; ``1 / enter``
etc. are computed as written.

State: ``window`` (the last W samples, FIFO), ``last`` (stitch of the previous call, none at
start), ``run`` (consecutive samples of ``last``), ``calls``, ``state`` (``NOMINAL`` at start),
``correction c`` (1.0), ``inflation g`` (none), ``calm`` (1), ``streak`` (0), ``returned_at``
(-1), ``chosen_with`` ((1.0, 1.0)), ``penalty`` (stitch -> factor pair, empty), ``settled`` (none
or (stitch, speed factor, latency factor)), ``home`` (none or the same triple), ``credit`` (none
or the same triple), ``return_to`` (none), ``pending`` (``NONE``).

``record(s, b, seconds)``, in this order:

1. ``ms = seconds * 1000``; ``r = ms / m(s,b)``; ``u = ms / q(s,b)``. If ``s == last``: append
   ``(r, u)`` to ``window`` and ``run += 1`` (the first call after a switch warms the stitch up
   and is not a sample); else ``run = 0``. ``last = s``; ``calls += 1``.
2. Only when ``calls % check_every == 0`` and ``window`` is not empty, go on; else return ``NONE``.
3. ``n = len(window)``; ``R``, ``U`` = the ``r`` and ``u`` values sorted ascending.
   ``c = R[n // 2]`` (the upper median). ``P`` = 0.5 / 0.9 / 0.99 for ``stat``. If
   ``n >= min_samples``: ``g = U[ceil(P * n) - 1]`` (nearest rank; ``P * n`` in double; for
   ``P = 0.5`` the upper median ``U[n // 2]``) and the diagnostic tail ratios
   ``R[ceil(0.9 n) - 1]``, ``R[ceil(0.99 n) - 1]``; else ``g`` = none.
4. ``NOMINAL``: if ``g`` is none, or ``1 / enter <= c <= enter`` and ``g <= tail_enter``: the
   answer is ``NONE``. Else ``state = CORRECTED``, ``streak = 0``, ``credit`` = none,
   ``chosen_with = (c, g)``; the answer is ``RECHOOSE``.
5. ``CORRECTED``: the leave check uses the ``k = min_samples`` newest samples only (old ones age
   out): ``ck = Rk[k // 2]``; ``gk = Uk[min(ceil(P * k) - 1, k - 2)]`` for ``P > 0.5`` and
   ``k > 1`` (the largest of the ``k`` is ignored: one stray slow call in ten does not prove the
   load goes on), ``Uk[k // 2]`` for ``P = 0.5`` (``Rk``, ``Uk`` sorted). With
   ``n >= k`` it passes when, if ``home`` is none: ``1 / leave <= ck <= leave`` and
   ``gk <= tail_leave``; if ``home`` ran as profiled (factors exactly 1.0): ``ck <= leave`` and
   ``gk <= tail_leave``; else ``ck <= home.speed * leave`` and ``gk <= home.latency * tail_leave``.
   Passing: ``streak += 1``, else ``streak = 0``. When ``streak >= calm``: RETURN (6). Else with
   ``now = (c, g or c)``: if for some component ``|ln(now / chosen_with)| >= ln(1 + min_change)``,
   ``chosen_with = now`` and the answer is ``RECHOOSE``; else ``NONE``.
6. RETURN: ``return_to`` = home's stitch (none without a home); ``home`` = none; ``streak = 0``;
   ``returned_at = calls``; ``penalty`` cleared. If there was no home or it ran as profiled:
   ``state = NOMINAL``, ``credit`` = none, ``window`` cleared, ``c = 1.0``, ``g`` and tails none,
   ``chosen_with = (1.0, 1.0)``. Else (still ``CORRECTED``): ``window`` keeps only its ``k``
   newest samples, ``credit = home``, ``chosen_with`` = home's factors. The answer is ``RETURN``.
7. If the answer is ``NONE`` and ``run >= min_samples``: ``settled = (last, speed factor,
   latency factor)`` (the factors in use now, see below). If the answer ranks above ``pending``
   (``NONE`` < ``RECHOOSE`` < ``RETURN``), ``pending`` = answer. Return the answer.

``penalise(s)`` (the selector calls it when, acting on a request, it finds the running stitch
``s`` missing the budget; only in ``CORRECTED``): ``penalty[s]`` = the current (speed factor,
latency factor); ``credit`` = none if it is for ``s``; ``calm = min(2 calm, calm_max)`` if
``returned_at >= 0`` and ``calls - returned_at <= 2 W`` (a return that did not hold), else
``calm = 1``; if ``home`` is none and ``settled`` is for ``s``: ``home = settled``.
``clear_home()`` (a new budget): ``home``, ``settled``, ``credit`` = none. ``take_request()``:
returns ``pending`` and sets it to ``NONE`` (a request made while another thread was switching is
taken by a later call, never lost).

Factors: speed factor = 1.0 in ``NOMINAL``, else ``c``; latency factor = 1.0 in ``NOMINAL``,
else ``g`` (``c`` while ``g`` is none). Per stitch, ``factors(s)``: in ``NOMINAL`` those; in
``CORRECTED``, if ``credit`` is for ``s`` and speed <= credit.speed * leave and latency <=
credit.latency * tail_leave: the credit's factors (the home stitch is predicted as when it ran
before the step); else if ``s`` has a penalty: componentwise ``max`` of the factors and the
penalty; else the factors. Predicted throughput = profiled / speed factor; predicted latency
percentile = profiled percentile x latency factor. The selector, acting on ``RETURN``, activates
``return_to`` when it is on the frontier, else chooses with up-switch margin 1.0.

Selector.choose (``max`` keeps the first of equals in frontier order, slowest first): ``fits`` =
frontier stitches meeting the budget at margin 1.0; none: the fastest (predicted). ``best`` = the
most accurate of ``fits``. If the running stitch misses at 1.0 (or is off the frontier): in
``CORRECTED`` the most accurate stitch meeting margin ``1 + hysteresis`` if any, else ``best``. If
``best`` is not more accurate than the running one: ``best``. Else an up-switch: to the most
accurate of ``fits`` that is more accurate than the running one and meets margin ``1 + hysteresis``
(margin 1.0 when acting on a ``RETURN``), else stay. In
``CORRECTED`` it switches *up* (to a more accurate stitch, not on a return) only once the running
stitch has ``run >= W`` (``dwelt``): the factors then come from that stitch alone, so a load that
fluctuates does not walk the choice up and down.

Defaults: W = 20, ``check_every`` 3, ``min_samples`` 10, ``enter`` 1.10, ``leave`` 1.05,
``tail_enter`` 1.30, ``tail_leave`` 1.15, ``min_change`` 0.03, ``calm_max`` 32. A load step is
followed after about ``W / 2`` calls (one or two calls for a tail budget); the return after about
``min_samples + check_every`` calls of the recovered device.

Memory: one W-long deque, one ``history``-long deque and at most one penalty per stitch. ``record``
costs a lock, a few appends and, every ``check_every`` calls, a few sorts of W floats. Stdlib only.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any, Mapping

#: calls whose median ratio is the correction; a step change is followed after ~window/2 calls
DEFAULT_WINDOW = 20
#: samples needed before a state change or a tail estimate; also the leave check's recent samples
MIN_SAMPLES = 10
#: re-estimate every this many calls (the cost of the sorts, amortised)
DEFAULT_CHECK_EVERY = 3
#: in CORRECTED, re-choose the stitch when a factor moved by more than this (relative)
DEFAULT_MIN_CHANGE = 0.03
#: NOMINAL -> CORRECTED when the median ratio leaves [1/ENTER, ENTER] or the tail inflation > TAIL_ENTER
ENTER, TAIL_ENTER = 1.10, 1.30
#: return when the recent median is within LEAVE and the recent tail within TAIL_LEAVE (of the home's factors)
LEAVE, TAIL_LEAVE = 1.05, 1.15
#: the most consecutive passing leave checks a return can need after returns that did not hold
CALM_MAX = 32

NOMINAL, CORRECTED = "nominal", "corrected"
#: ``record``'s answers: nothing to do, re-choose with the new factors, back to the profile's choice
NONE, RECHOOSE, RETURN = 0, 1, 2
_LEVEL = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _rank(ordered: list[float], level: float) -> float:
    """Nearest-rank quantile of an ascending list (``level`` 0.5 gives the upper median)."""
    n = len(ordered)
    return ordered[n // 2] if level == 0.5 else ordered[math.ceil(level * n) - 1]


class LatencyTracker:
    """Observed latencies, the NOMINAL / CORRECTED state and the factors the selector predicts with.

    Args:
        profile_ms: ``{(stitch id, batch): profiled median latency in ms}``.
        window: samples (over all stitches) the correction and inflation are taken from.
        check_every: re-estimate every this many calls.
        min_change: relative change of a factor that asks for a re-choice in ``CORRECTED``.
        history: latencies kept per stitch for ``observed`` (bounded memory).
        min_samples: samples before a state change or a tail estimate; the leave check's recent samples.
        tail_ms: ``{(stitch id, batch): profiled latency at percentile stat}`` (default: ``profile_ms``).
        stat: the latency percentile the selector budgets (``p50``/``p90``/``p99``).
        bands: ``(enter, leave, tail_enter, tail_leave)`` thresholds of the state machine.
    """

    def __init__(self, profile_ms: Mapping[tuple[int, int], float], window: int = DEFAULT_WINDOW,
                 check_every: int = DEFAULT_CHECK_EVERY, min_change: float = DEFAULT_MIN_CHANGE,
                 history: int = 64, min_samples: int = MIN_SAMPLES,
                 tail_ms: Mapping[tuple[int, int], float] | None = None, stat: str = "p50",
                 bands: tuple[float, float, float, float] = (ENTER, LEAVE, TAIL_ENTER, TAIL_LEAVE)) -> None:
        if window < 1 or check_every < 1 or history < 1 or min_samples < 1:
            raise ValueError("window, check_every, history and min_samples must be >= 1")
        if stat not in _LEVEL:
            raise ValueError(f"stat must be one of {sorted(_LEVEL)}, got {stat!r}")
        self._profile = {"m": dict(profile_ms), "q": dict(tail_ms if tail_ms is not None else profile_ms)}
        self._expected: dict[tuple[str, int, int], float] = {}
        self._window: deque[tuple[float, float]] = deque(maxlen=window)
        self._size = window
        self._seen: dict[int, deque[float]] = {}
        self._history, self._check_every, self._level = history, check_every, _LEVEL[stat]
        self._threshold = math.log1p(min_change)
        self._min_samples = min(min_samples, window)
        self._enter, self._leave, self._tail_enter, self._tail_leave = bands
        self._lock = threading.Lock()
        self._calls = 0
        self._penalty: dict[int, tuple[float, float]] = {}
        self._fresh()

    def _fresh(self) -> None:
        """The state at start and after ``reset`` (plain attribute assignments: safe to read without the lock)."""
        self._window.clear()
        self._seen.clear()
        self._penalty.clear()
        self.state, self.correction, self.pending, self._chosen_with = NOMINAL, 1.0, NONE, (1.0, 1.0)
        self.inflation: float | None = None
        self._tails: dict[str, float] | None = None  # replaced whole, never mutated: safe to read
        self._last: int | None = None
        self._calm, self._streak, self._returned_at, self._run = 1, 0, -1, 0  # run: samples of the running stitch
        self._settled: tuple[int, float, float] | None = None  # (stitch, factors) at the last quiet check
        self.home: tuple[int, float, float] | None = None  # where a return goes: (stitch, speed, latency factor)
        self.return_to: int | None = None  # the stitch of the last RETURN (None: the profile's choice)
        self._credit: tuple[int, float, float] | None = None  # home after a CORRECTED return

    # ---- profile look-ups ----
    def _lookup(self, kind: str, stitch: int, batch: int) -> float:
        key = (kind, stitch, batch)
        ms = self._expected.get(key)
        if ms is None:
            prof = self._profile[kind]
            near = sorted(b for s, b in prof if s == stitch)
            if not near:
                raise KeyError(f"stitch {stitch} is not in the profile")
            nb = min(near, key=lambda b: abs(b - batch))  # first of the sorted batches on a tie
            ms = self._expected[key] = prof[stitch, nb] * batch / nb
        return ms

    def expected_ms(self, stitch: int, batch: int) -> float:
        """Profiled median latency of ``stitch`` at ``batch`` (ms), before correction."""
        return self._lookup("m", stitch, batch)

    def predicted_ms(self, stitch: int, batch: int) -> float:
        """Profiled median latency times the speed factor (ms): the predicted median."""
        return self.expected_ms(stitch, batch) * self.speed_factor

    # ---- what the selector predicts with ----
    @property
    def corrected(self) -> bool:
        """Whether the device is off its profile (decisions use the observed factors)."""
        return self.state == CORRECTED

    @property
    def dwelt(self) -> bool:
        """Whether the running stitch has given ``W`` samples since it was switched to (up-switches wait for it)."""
        return self._run >= self._size

    @property
    def speed_factor(self) -> float:
        """Predicted latency / profiled median latency: 1.0 in ``NOMINAL``, the correction otherwise."""
        return self.correction if self.state == CORRECTED else 1.0

    @property
    def latency_factor(self) -> float:
        """Predicted / profiled latency at ``stat``: 1.0 in ``NOMINAL``, the observed inflation otherwise."""
        if self.state != CORRECTED:
            return 1.0
        g = self.inflation
        return self.correction if g is None else g

    def factors(self, stitch: int) -> tuple[float, float]:
        """``(speed, latency)`` factors for predicting ``stitch``: the global ones, or the stitch's
        penalty where it is larger (:meth:`penalise`; only in ``CORRECTED``)."""
        speed, latency = self.speed_factor, self.latency_factor
        if self.state != CORRECTED:
            return speed, latency
        credit = self._credit
        if credit is not None and credit[0] == stitch and speed <= credit[1] * self._leave \
                and latency <= credit[2] * self._tail_leave:
            return credit[1], credit[2]  # as when it ran before the step: predicted as it was then
        pen = self._penalty.get(stitch)
        if pen is None:
            return speed, latency
        return max(speed, pen[0]), max(latency, pen[1])

    def penalise(self, stitch: int) -> None:
        """``stitch`` is left because it missed the budget: remember the factors it was left at; the
        first stitch left since the last return (if it had settled) becomes the *home* a return goes to."""
        with self._lock:
            if self.state != CORRECTED:
                return
            self._penalty[stitch] = (self.speed_factor, self.latency_factor)
            if self._credit is not None and self._credit[0] == stitch:
                self._credit = None
            relapse = self._returned_at >= 0 and self._calls - self._returned_at <= 2 * self._size
            self._calm = min(2 * self._calm, CALM_MAX) if relapse else 1
            if self.home is None and self._settled is not None and self._settled[0] == stitch:
                self.home = self._settled

    @property
    def tails(self) -> dict[str, float] | None:
        """``{"p50", "p90", "p99"}`` ratios to the profiled median, ``None`` until ``min_samples``."""
        return self._tails

    def tail(self, stat: str) -> float | None:
        """Current ratio to the profiled median at percentile ``stat``, ``None`` until enough samples."""
        tails = self._tails
        return None if tails is None else tails.get(stat)

    # ---- the loop ----
    def record(self, stitch: int, batch: int, seconds: float) -> int:
        """Add one served call; ``NONE``, ``RECHOOSE`` or ``RETURN`` (see the module docstring)."""
        ms = seconds * 1e3
        r, u = ms / self._lookup("m", stitch, batch), ms / self._lookup("q", stitch, batch)
        with self._lock:
            if stitch == self._last:  # the first call after a switch warms the stitch up: not a sample
                self._window.append((r, u))
                self._run += 1
            else:
                self._run = 0
            self._last = stitch
            seen = self._seen.get(stitch)
            if seen is None:
                seen = self._seen[stitch] = deque(maxlen=self._history)
            seen.append(ms / batch)
            self._calls += 1
            if self._calls % self._check_every or not self._window:
                return NONE
            answer = self._check()
            if answer == NONE and self._run >= self._min_samples and self._last is not None:
                self._settled = (self._last, self.speed_factor, self.latency_factor)
            if answer > self.pending:
                self.pending = answer
            return answer

    def _check(self) -> int:
        """Steps 3-5 of the algorithm (the caller holds the lock)."""
        n = len(self._window)
        ratios = sorted(p[0] for p in self._window)
        c = self.correction = _rank(ratios, 0.5)
        g = None
        if n >= self._min_samples:
            g = _rank(sorted(p[1] for p in self._window), self._level)
            self._tails = {"p50": c, "p90": _rank(ratios, 0.9), "p99": _rank(ratios, 0.99)}
        self.inflation = g
        if self.state == NOMINAL:
            if g is None or (1 / self._enter <= c <= self._enter and g <= self._tail_enter):
                return NONE  # too few samples (g is None until min_samples), or within the band
            self.state, self._streak, self._credit = CORRECTED, 0, None
            self._chosen_with = (c, g)
            return RECHOOSE
        if self._recent_ok():
            self._streak += 1
            if self._streak >= self._calm:
                return self._return()
        else:
            self._streak = 0
        now = (c, c if g is None else g)
        if all(abs(math.log(a / b)) < self._threshold for a, b in zip(now, self._chosen_with)):
            return NONE
        self._chosen_with = now
        return RECHOOSE

    def _recent_ok(self) -> bool:
        """The leave check on the ``min_samples`` newest samples, against the home's factors."""
        k = self._min_samples
        if len(self._window) < k:
            return False
        recent = list(self._window)[-k:]
        ck = _rank(sorted(p[0] for p in recent), 0.5)
        u = sorted(p[1] for p in recent)
        gk = u[min(math.ceil(self._level * k) - 1, k - 2)] if self._level != 0.5 and k > 1 else _rank(u, 0.5)
        home = self.home
        if home is None or home[1] == 1.0 and home[2] == 1.0:  # the profile: back within its band
            low = 1 / self._leave if home is None else 0.0
            return low <= ck <= self._leave and gk <= self._tail_leave
        return ck <= home[1] * self._leave and gk <= home[2] * self._tail_leave

    def _return(self) -> int:
        home, self.home = self.home, None
        self.return_to = None if home is None else home[0]
        self._streak, self._returned_at = 0, self._calls
        self._penalty.clear()
        if home is None or home[1] == 1.0 and home[2] == 1.0:  # back to the profile: NOMINAL
            self.state, self._credit = NOMINAL, None
            self._window.clear()
            self.correction, self.inflation, self._tails, self._chosen_with = 1.0, None, None, (1.0, 1.0)
        else:  # back to how the device was when home ran: stay CORRECTED; older samples age out
            recent = list(self._window)[-self._min_samples:]
            self._window.clear()
            self._window.extend(recent)
            self._credit, self._chosen_with = home, (home[1], home[2])
        return RETURN

    def clear_home(self) -> None:
        """Forget the home (a new budget: the old choice is no longer the one to go back to)."""
        with self._lock:
            self.home, self._settled, self._credit = None, None, None

    def take_request(self) -> int:
        """The pending ``RECHOOSE``/``RETURN`` (``NONE`` if none), cleared: the selector acts on it."""
        with self._lock:
            req, self.pending = self.pending, NONE
        return req

    # ---- diagnostics ----
    def observed(self, stitch: int) -> dict[str, Any] | None:
        """``{"calls", "p50_ms_per_image"}`` over the stitch's recent calls, ``None`` if never run."""
        with self._lock:
            seen = sorted(self._seen.get(stitch, ()))
        if not seen:
            return None
        return {"calls": len(seen), "p50_ms_per_image": round(seen[len(seen) // 2], 4)}

    def describe(self, stitch: int, batch: int) -> dict[str, Any]:
        """State, factors, tail ratios, predicted and observed median latency (ms) of ``stitch``."""
        seen = self.observed(stitch)
        return {"state": self.state, "correction": round(self.correction, 4), "batch": batch,
                "inflation": None if self.inflation is None else round(self.inflation, 4),
                "tail_ratios": {k: round(v, 4) for k, v in (self.tails or {}).items()} or None,
                "predicted_ms": round(self.predicted_ms(stitch, batch), 4),
                "observed_ms": None if seen is None else round(seen["p50_ms_per_image"] * batch, 4),
                "observed_calls": 0 if seen is None else seen["calls"]}

    @property
    def calls(self) -> int:
        """Calls recorded so far."""
        return self._calls

    def reset(self) -> None:
        """Forget every observation (back to ``NOMINAL``), e.g. after a new profile."""
        with self._lock:
            self._fresh()
