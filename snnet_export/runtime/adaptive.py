"""Closed loop for the selector: is the device running as profiled, and if not, how much slower?

The profile was measured once; throttling, DVFS or other processes change the speed later.
``LatencyTracker`` times every call the selector serves and runs a two-state machine:

* ``NOMINAL``: the device runs as profiled. Decisions use the profile as is (factors exactly 1.0).
* ``CORRECTED``: the device is measurably off its profile. Decisions use the profile times the
  observed factors (median slowdown for throughput; for latency budgets the observed inflation of
  the budgeted percentile, never below the median slowdown), with the selector's hysteresis.

Recovery: a *load step* (3 consecutive calls 1.5x slower than the factor in use) is seen at once:
older samples age out, the factors are taken from the step's calls alone, and the selector goes
straight to the stitch predicted to fit. The stitch it had settled on before is the *home*. The end
of the load is a step too (3 calls 1.5x faster): once ``min_samples`` calls since show the device
back to the home's factors, the loop *returns* straight to the home (to ``NOMINAL`` when it ran as
profiled), without the hysteresis margin. Stitches left behind carry a *penalty* until then; a
return that does not hold doubles the passing checks the next one needs (``calm``), so an apparent
recovery cannot flap. A load that slows the device down puts the loop on *hold* until the return:
the selector makes no up-switch, the budgeted tail is the window's largest sample, and the return
needs one passing check more. Under a bursty load (calls alternately time-shared and not) a few
fast calls look like the end of the load and the next more accurate stitch looks like it fits; on
hold neither is taken at its word.

Algorithm (deterministic given the sequence of calls; no randomness, no clock of its own)
------------------------------------------------------------------------------------------
Profile per ``(stitch s, batch b)``: ``m(s,b)`` the profiled median (ms), ``q(s,b)`` the profiled
percentile ``stat`` (``q = m`` when not given). An unprofiled batch uses the nearest profiled batch
``nb`` of that stitch (the smaller on a tie): ``m(s,b) = (m(s,nb) * b) / nb`` (same for ``q``).
Doubles throughout, computed as written. ``P`` = 0.5 / 0.9 / 0.99 for ``stat``. ``rank(X, P)`` of
ascending ``X`` (``n`` values): ``X[n // 2]`` for ``P = 0.5``, else ``X[ceil(P * n) - 1]``;
``tail(X, P)``: ``rank`` for ``P = 0.5`` or ``n < 2``, else ``X[min(ceil(P * n) - 1, n - 2)]`` (never
the largest: one stray call is no tail).

State: ``window`` (last W samples, FIFO), ``last`` (none), ``run``, ``over``, ``under``, ``calls``
(0), ``state`` (``NOMINAL``), ``c`` (1.0), ``g`` (none), ``calm`` (1), ``streak`` (0),
``returned_at`` (-1), ``chosen_with`` ((1.0, 1.0)), ``penalty`` (stitch -> factor pair), ``settled``,
``home``, ``credit`` (none or (stitch, speed factor, latency factor)), ``return_to`` (none),
``pending`` (``NONE``), ``hold`` (false), ``top`` (1.0).

``record(s, b, seconds)``, in this order:

1. ``ms = seconds * 1000``; ``r = ms / m(s,b)``; ``u = ms / q(s,b)``. If ``s == last``: append
   ``(r, u)`` to ``window``, ``run += 1``, and with ``f`` = the speed factor now: ``over += 1`` if
   ``r > f * STEP`` else ``over = 0``; ``under += 1`` if ``r < f / STEP`` else ``under = 0``. Else
   ``run = 0`` (the first call after a switch warms the stitch up: not a sample). ``last = s``;
   ``calls += 1``.
2. *Step* when ``over >= STEP_CALLS`` or ``under >= STEP_CALLS``: if ``over >= STEP_CALLS`` and
   holding is enabled, ``hold`` = true; ``window`` keeps its ``STEP_CALLS`` newest samples,
   ``over = under = 0``, go on. Else go on only when
   ``calls % check_every == 0`` and ``window`` is not empty; else return ``NONE``.
3. ``n = len(window)``; ``R``, ``U`` = the ``r``, ``u`` values ascending. ``c = rank(R, 0.5)``;
   ``top = U[n - 1]``. If ``n >= min_samples``: ``g = tail(U, P)`` (``rank(U, P)`` when ``hold``) and
   the diagnostic tails ``rank(R, 0.9)``, ``rank(R, 0.99)``; else ``g`` = none.
4. ``NOMINAL``: unless a step, if ``g`` is none or ``1 / enter <= c <= enter`` and
   ``g <= tail_enter``: ``NONE``. Else ``state = CORRECTED``, ``streak = 0``, ``credit`` = none;
   if holding is enabled, not ``hold`` yet, not a step (so ``g`` is not none) and ``c > enter`` or
   ``g > tail_enter`` (slower): ``hold`` = true and ``g = rank(U, P)``; ``chosen_with`` =
   (speed, latency factor) (see Factors); ``RECHOOSE``.
5. ``CORRECTED``: the leave check on the ``k = min_samples`` newest samples (all since the last
   step), failing when ``n < min_samples``: ``ck = rank(Rk, 0.5)``,
   ``gk = tail(Uk, P)``. If ``home`` is none: ``1 / leave <= ck <= leave`` and ``gk <= tail_leave``;
   if ``home`` ran as profiled (factors exactly 1.0): ``ck <= leave`` and ``gk <= tail_leave``; else
   ``ck <= home.speed * leave`` and ``gk <= home.latency * tail_leave``. Passing: ``streak += 1``,
   else ``streak = 0``. When ``streak >= calm`` (``calm + 1`` when ``hold``): RETURN (6). Else
   with ``now`` = (speed, latency factor): if for a component ``|ln(now / chosen_with)| >=
   ln(1 + min_change)``, ``chosen_with = now``, ``RECHOOSE``; else ``NONE``.
6. RETURN: ``return_to`` = home's stitch (none without a home); ``home`` = none; ``over = under =
   streak = 0``; ``returned_at = calls``; ``penalty`` cleared; ``hold`` = false. No home or it ran
   as profiled:
   ``state = NOMINAL``, ``credit`` = none, ``window`` cleared, ``c = 1.0``, ``g`` and tails none,
   ``chosen_with = (1.0, 1.0)``. Else (still ``CORRECTED``): ``window`` keeps its ``min_samples``
   newest, ``credit = home``, ``chosen_with`` = home's factors. ``RETURN``.
7. If the answer is ``NONE`` and ``run >= min_samples``: ``settled = (last, speed factor, latency
   factor)``. If the answer ranks above ``pending`` (``NONE`` < ``RECHOOSE`` < ``RETURN``), ``pending``
   = answer. Return the answer.

``penalise(s)`` (the selector, acting on a request, finds the running ``s`` missing the budget; only
in ``CORRECTED``): ``penalty[s]`` = the current factors; ``credit`` = none if it is for ``s``;
``calm = min(2 calm, calm_max)`` if ``returned_at >= 0`` and ``calls - returned_at <= 2 W`` (a
return that did not hold), else ``calm = 1``; if ``home`` is none and ``settled`` is for ``s``:
``home = settled``. ``clear_home()`` (a new budget): ``home``, ``settled``, ``credit`` = none.
``take_request()``: returns ``pending``, sets it to ``NONE``.

Factors: in ``NOMINAL`` speed = latency = 1.0; in ``CORRECTED`` speed = ``c``, latency =
``max(c, g)`` (``max(c, top)`` while ``g`` is none: a few samples' tail is their largest). Per
stitch, ``factors(s)``: in ``CORRECTED``, if ``credit`` is for ``s`` and speed <= credit.speed *
leave and latency <= credit.latency * tail_leave: the credit's (the home as it ran before the
step); else with a penalty for ``s``: componentwise ``max`` with it; else the factors. Predicted throughput = profiled / speed; predicted
percentile = profiled percentile x latency. On ``RETURN`` the selector activates ``return_to`` when
it is on the frontier, else chooses with up-switch margin 1.0.

Selector.choose: its docstring (in ``CORRECTED`` it goes straight to the stitch predicted to fit;
no up-switch while ``hold``). ``LatencyTracker(hold=False)`` (the SLO server's, whose own hysteresis
and dwell handle its load) never sets ``hold``.

Defaults: W = 20, ``check_every`` 3, ``min_samples`` 10, ``enter`` 1.10, ``leave`` 1.05,
``tail_enter`` 1.30, ``tail_leave`` 1.15, ``min_change`` 0.03, ``calm_max`` 32, ``STEP`` 1.5,
``STEP_CALLS`` 3. A load step of 1.5x or more is followed at its third sample, its end likewise;
smaller changes after about ``W / 2`` calls (fewer for a tail budget), the return after about
``min_samples + check_every`` calls.

Memory: a W-long deque, a ``history``-long deque and at most one penalty per stitch. ``record``: a
lock, a few appends and, every ``check_every`` calls or at a step, a few sorts of W floats.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Mapping

from .readout import TrackerReadout

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
#: a load step: STEP_CALLS consecutive samples above (below) the speed factor times (over) STEP
STEP, STEP_CALLS = 1.5, 3

NOMINAL, CORRECTED = "nominal", "corrected"
#: ``record``'s answers: nothing to do, re-choose with the new factors, back to the profile's choice
NONE, RECHOOSE, RETURN = 0, 1, 2
_LEVEL = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _rank(ordered: list[float], level: float, tail: bool = False) -> float:
    """Nearest-rank quantile of an ascending list (0.5: the upper median); ``tail``: never the largest of 2+."""
    n = len(ordered)
    if level == 0.5:
        return ordered[n // 2]
    return ordered[min(math.ceil(level * n) - 1, n - 2) if tail and n > 1 else math.ceil(level * n) - 1]


class LatencyTracker(TrackerReadout):
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
        hold: put the loop on hold under a load that slows the device (see the module docstring).
    """

    def __init__(self, profile_ms: Mapping[tuple[int, int], float], window: int = DEFAULT_WINDOW,
                 check_every: int = DEFAULT_CHECK_EVERY, min_change: float = DEFAULT_MIN_CHANGE,
                 history: int = 64, min_samples: int = MIN_SAMPLES,
                 tail_ms: Mapping[tuple[int, int], float] | None = None, stat: str = "p50",
                 bands: tuple[float, float, float, float] = (ENTER, LEAVE, TAIL_ENTER, TAIL_LEAVE),
                 hold: bool = True) -> None:
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
        self._lock, self._calls, self._holds = threading.Lock(), 0, hold
        self._penalty: dict[int, tuple[float, float]] = {}
        self._fresh()

    def _fresh(self) -> None:
        """The state at start and after ``reset`` (plain attribute assignments: safe to read without the lock)."""
        self._window.clear()
        self._seen.clear()
        self._penalty.clear()
        self.state, self.correction, self.pending, self._chosen_with = NOMINAL, 1.0, NONE, (1.0, 1.0)
        self.inflation: float | None = None
        self.hold, self._top = False, 1.0  # on hold under a load; the window's largest u (the few samples' tail)
        self._tails: dict[str, float] | None = None  # replaced whole, never mutated: safe to read
        self._last: int | None = None
        self._calm, self._streak, self._returned_at, self._run = 1, 0, -1, 0  # run: samples of the running stitch
        self._over = self._under = 0  # consecutive samples above / below the speed factor's step band
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
        g, c = self.inflation, self.correction
        return max(c, self._top if g is None else g)  # never below the median slowdown

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

    # ---- the loop ----
    def record(self, stitch: int, batch: int, seconds: float) -> int:
        """Add one served call; ``NONE``, ``RECHOOSE`` or ``RETURN`` (see the module docstring)."""
        ms = seconds * 1e3
        r, u = ms / self._lookup("m", stitch, batch), ms / self._lookup("q", stitch, batch)
        with self._lock:
            if stitch == self._last:  # the first call after a switch warms the stitch up: not a sample
                self._window.append((r, u))
                self._run, f = self._run + 1, self.speed_factor
                self._over, self._under = (self._over + 1) * (r > f * STEP), (self._under + 1) * (r < f / STEP)
            else:
                self._run = 0
            self._last = stitch
            seen = self._seen.get(stitch)
            if seen is None:
                seen = self._seen[stitch] = deque(maxlen=self._history)
            seen.append(ms / batch)
            self._calls += 1
            step = max(self._over, self._under) >= STEP_CALLS
            if step:  # a load step (or its end): only the samples since it count
                self.hold = self.hold or (self._holds and self._over >= STEP_CALLS)
                self._keep(STEP_CALLS)
                self._over = self._under = 0
            elif self._calls % self._check_every or not self._window:
                return NONE
            answer = self._check(step)
            if answer == NONE and self._run >= self._min_samples and self._last is not None:
                self._settled = (self._last, self.speed_factor, self.latency_factor)
            if answer > self.pending:
                self.pending = answer
            return answer

    def _keep(self, k: int) -> None:
        """Keep only the ``k`` newest samples of the window (older ones age out)."""
        recent = list(self._window)[-k:]
        self._window.clear()
        self._window.extend(recent)

    def _check(self, step: bool = False) -> int:
        """Steps 3-5 of the algorithm (the caller holds the lock)."""
        n = len(self._window)
        ratios = sorted(p[0] for p in self._window)
        c = self.correction = _rank(ratios, 0.5)
        us = sorted(p[1] for p in self._window)
        g, self._top = None, us[-1]
        if n >= self._min_samples:
            g = _rank(us, self._level, not self.hold)  # on hold: the largest counts
            self._tails = {"p50": c, "p90": _rank(ratios, 0.9), "p99": _rank(ratios, 0.99)}
        self.inflation = g
        if self.state == NOMINAL:
            if not step and (g is None or (1 / self._enter <= c <= self._enter and g <= self._tail_enter)):
                return NONE  # too few samples (g is None until min_samples), or within the band
            self.state, self._streak, self._credit = CORRECTED, 0, None
            if self._holds and not self.hold and not step and g is not None \
                    and (c > self._enter or g > self._tail_enter):  # not a step, so g is set
                self.hold = True  # slower: on hold
                self.inflation = _rank(us, self._level)
            self._chosen_with = (c, self.latency_factor)
            return RECHOOSE
        if self._recent_ok():
            self._streak += 1
            if self._streak >= self._calm + self.hold:  # on hold: one passing check more
                return self._return()
        else:
            self._streak = 0
        now = (c, self.latency_factor)
        if all(abs(math.log(a / b)) < self._threshold for a, b in zip(now, self._chosen_with)):
            return NONE
        self._chosen_with = now
        return RECHOOSE

    def _recent_ok(self) -> bool:
        """The leave check on the ``min_samples`` newest samples (all since a step), against the home's factors."""
        k = self._min_samples
        if len(self._window) < k:
            return False
        recent = list(self._window)[-k:]
        ck = _rank(sorted(p[0] for p in recent), 0.5)
        gk = _rank(sorted(p[1] for p in recent), self._level, True)
        home = self.home
        if home is None or home[1] == 1.0 and home[2] == 1.0:  # the profile: back within its band
            low = 1 / self._leave if home is None else 0.0
            return low <= ck <= self._leave and gk <= self._tail_leave
        return ck <= home[1] * self._leave and gk <= home[2] * self._tail_leave

    def _return(self) -> int:
        home, self.home = self.home, None
        self._over = self._under = 0
        self.return_to = None if home is None else home[0]
        self._streak, self._returned_at, self.hold = 0, self._calls, False
        self._penalty.clear()
        if home is None or home[1] == 1.0 and home[2] == 1.0:  # back to the profile: NOMINAL
            self.state, self._credit = NOMINAL, None
            self._window.clear()
            self.correction, self.inflation, self._tails, self._chosen_with = 1.0, None, None, (1.0, 1.0)
        else:  # back to how the device was when home ran: stay CORRECTED; older samples age out
            self._keep(self._min_samples)
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

    def reset(self) -> None:
        """Forget every observation (back to ``NOMINAL``), e.g. after a new profile."""
        with self._lock:
            self._fresh()
