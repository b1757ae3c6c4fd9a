"""Drive the real Python :class:`~snnet_export.runtime.Selector` through a seeded event script.

Each event is applied to the reference Selector and recorded with what it decided: the stitch
``set_budget``/``choose`` returned, whether no stitch met the budget (its warning), what
``observe`` did to the closed loop (correction, tail ratios, whether it re-chose) and the
``describe`` dictionary. The script reads the Selector's state only to aim at interesting
places (budgets on a stitch's predicted speed and on the hysteresis margin); every expected value
is the Selector's own output.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any, Callable

from ..errors import SelectorError
from ..runtime.selector import Candidate, Selector

NO_FIT = "no stitch meets the budget"


def encode_float(x: float | None) -> float | str | None:
    """JSON has no NaN/inf: write them as strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


class Recorder:
    """Applies events to ``sel`` and keeps the list of recorded events."""

    def __init__(self, sel: Selector, rng: random.Random) -> None:
        self.sel, self.rng = sel, rng
        self.events: list[dict[str, Any]] = []
        self._switched = False
        switch = sel._switch  # capture whether observe() acted on a request of the loop

        def spy(req: int = 0) -> int:
            self._switched = True
            return switch(req)

        sel._switch = spy  # type: ignore[method-assign]

    def _call(self, fn: Callable[[], Any]) -> tuple[Any, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        return out, any(NO_FIT in str(w.message) for w in caught)

    def set_budget(self, min_throughput: float | None, max_latency_ms: float | None, batch: int | None) -> None:
        ev: dict[str, Any] = {"op": "set_budget", "min_throughput": encode_float(min_throughput),
                              "max_latency_ms": encode_float(max_latency_ms), "batch": batch}
        try:
            chosen, no_fit = self._call(lambda: self.sel.set_budget(min_throughput=min_throughput,
                                                                    max_latency_ms=max_latency_ms, batch=batch))
            ev["expect"] = {"id": chosen, "no_fit": no_fit, **self._state()}
        except SelectorError:
            ev["expect"] = {"error": "argument"}
        self.events.append(ev)

    def choose(self) -> None:
        chosen, no_fit = self._call(self.sel.choose)
        self.events.append({"op": "choose", "expect": {"id": chosen, "no_fit": no_fit, **self._state()}})

    def observe(self, stitch: int, batch: int, seconds: float) -> None:
        ev: dict[str, Any] = {"op": "observe", "stitch": stitch, "batch": batch, "seconds": seconds}
        self._switched = False
        try:
            _, no_fit = self._call(lambda: self.sel.observe(stitch, batch, seconds))
        except KeyError:
            ev["expect"] = {"error": "unknown_stitch"}
        else:
            ev["expect"] = {"rechose": self._switched, "no_fit": no_fit, **self._state()}
        self.events.append(ev)

    def describe(self, stitch: int | None) -> None:
        ev: dict[str, Any] = {"op": "describe", "stitch": stitch}
        try:
            ev["expect"] = {"describe": self.sel.describe(stitch)}
        except KeyError:
            ev["expect"] = {"error": "unknown_stitch"}
        self.events.append(ev)

    def _state(self) -> dict[str, Any]:
        tracker = self.sel.tracker
        if tracker is None:
            return {"current": self.sel.current, "correction": self.sel.correction, "tails": None}
        return {"current": self.sel.current, "correction": self.sel.correction, "tails": tracker.tails,
                "state": tracker.state, "raw_correction": tracker.correction, "inflation": tracker.inflation,
                "latency_factor": tracker.latency_factor, "hold": tracker.hold}

    # ---- helpers the scripts use ----
    def batch(self) -> int:
        return int(self.sel.budget.get("batch", self.sel.batch))

    def speed(self, c: Candidate, batch: int) -> float:
        return self.sel._speed(c, batch)  # the reference's own prediction

    def p50_ms(self, stitch: int, batch: int) -> float:
        tracker = self.sel.tracker
        if tracker is not None:
            return tracker.expected_ms(stitch, batch)
        lat = self.sel.candidates[stitch].latency_ms
        return float(lat[min(lat, key=lambda b: abs(b - batch))]["p50"])


def random_budget(rec: Recorder) -> None:
    """A throughput or latency budget (or both) drawn around the candidates' speeds, at a random batch."""
    sel, rng = rec.sel, rec.rng
    batches = list(sel.profile["batches"])
    batch = rng.choice([None, *batches, *batches, rng.randint(1, 2 * max(batches))])
    b = batch or sel.batch
    speeds = [rec.speed(c, b) for c in sel.candidates.values()]
    lo, hi = min(speeds) * 0.5, max(speeds) * 1.3
    thr = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    lat = 1000.0 * b / math.exp(rng.uniform(math.log(lo), math.log(hi))) * rng.uniform(1.0, 2.0)
    kind = rng.random()
    if kind < 0.5:
        rec.set_budget(thr, None, batch)
    elif kind < 0.85:
        rec.set_budget(None, lat, batch)
    else:
        rec.set_budget(thr, lat, batch)


def boundary_budget(rec: Recorder) -> None:
    """A budget exactly on a frontier stitch's predicted speed or latency, or on the hysteresis margin."""
    sel, rng = rec.sel, rec.rng
    c = sel.candidates[rng.choice(sel.frontier)]
    b = rec.batch()
    margin = 1.0 + sel.hysteresis
    if rng.random() < 0.6:
        s = rec.speed(c, b)
        value = rng.choice([s, s / margin, math.nextafter(s / margin, 0.0), math.nextafter(s / margin, math.inf),
                            math.nextafter(s, math.inf), s * 0.999])
        rec.set_budget(value, None, b)
    else:
        lat = c.latency_ms.get(b) or c.latency_ms[min(c.latency_ms, key=lambda x: abs(x - b))]
        pred = lat[sel.latency_stat] * sel._factors(c)[1]  # the reference's own prediction
        value = rng.choice([pred, pred * margin, math.nextafter(pred * margin, 0.0),
                            math.nextafter(pred * margin, math.inf), math.nextafter(pred, 0.0)])
        rec.set_budget(None, value, b)


def bad_budget(rec: Recorder) -> None:
    """A budget the Selector refuses (the C library must refuse it too)."""
    value = rec.rng.choice([(None, None, None), (-5.0, None, None), (math.nan, None, None), (None, math.inf, None),
                            (None, -1.0, 4), (100.0, None, -2), (None, math.nan, 1)])
    rec.set_budget(*value)


def load_pattern(rng: random.Random, n: int) -> list[float]:
    """Slowdown factors for ``n`` calls: steady, a load step, spikes, a slow drift, recovery."""
    kind = rng.choice(["steady", "step", "spikes", "drift", "recovery", "step_down", "background"])
    f = rng.uniform(1.3, 4.0)
    out = []
    for k in range(n):
        if kind == "steady":
            x = 1.0
        elif kind == "step":
            x = 1.0 if k < n // 3 else f
        elif kind == "step_down":
            x = 1.0 if k < n // 3 else 1.0 / f
        elif kind == "spikes":
            x = rng.uniform(3.0, 8.0) if rng.random() < 0.08 else 1.0
        elif kind == "drift":
            x = 1.0 + (f - 1.0) * k / max(1, n - 1)
        elif kind == "background":  # off the profile already, a step on top, back to the background
            x = 1.3 if k < n // 3 or k >= 2 * n // 3 else 1.3 * f
        else:
            x = f if k < n // 2 else 1.0
        out.append(x * rng.lognormvariate(0.0, 0.05))
    return out


def serve(rec: Recorder, n: int) -> None:
    """``n`` served calls on the current stitch (now and then another or an unknown stitch) under a load pattern."""
    rng, sel = rec.rng, rec.sel
    for factor in load_pattern(rng, n):
        b = rec.batch()
        stitch = sel.current
        r = rng.random()
        if r < 0.03:
            stitch = rng.choice(list(sel.candidates))
        elif r < 0.035:
            rec.observe(10_000_019, b, 0.01)
            continue
        rec.observe(stitch, b, rec.p50_ms(stitch, b) * factor / 1e3)
        if rng.random() < 0.05:
            rec.choose()
        if rng.random() < 0.02:
            rec.describe(None)


def run_script(rec: Recorder, length: int) -> None:
    """A seeded mix of budgets, boundary budgets, served calls, choose and describe."""
    rng = rec.rng
    rec.choose()  # before any budget
    rec.describe(None)
    random_budget(rec)
    while len(rec.events) < length:
        r = rng.random()
        if r < 0.25:
            random_budget(rec)
        elif r < 0.4:
            boundary_budget(rec)
        elif r < 0.45:
            bad_budget(rec)
        elif r < 0.85:
            serve(rec, rng.randint(5, 90))
        elif r < 0.92:
            rec.choose()
        else:
            rec.describe(rng.choice([None, *rec.sel.candidates, 10_000_019]))
    rec.describe(None)
