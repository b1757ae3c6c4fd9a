"""When is a ranking known? Separated, tied and open neighbours; tie groups. Standard library only.

Per batch, the stitches are ordered by (FLOPs, id); a stitch's *FLOPs neighbours* are the one
before and the one after it in that order (the expected speed order, fixed while sampling goes on).
From each stitch's 95 % CI ``[lo, hi]`` of its median latency ``p50`` (:func:`.stats.median_ci`):

* half-width ``h = (hi - lo) / 2 / p50`` (relative);
* ``separated(i, j)``: the CIs are disjoint (``hi_i < lo_j`` or ``hi_j < lo_i``) and the larger
  median exceeds the smaller by more than ``tie_width`` (default twice the target): the order is
  known, and larger than the drift between two back-to-back runs of a shared machine (a CI covers
  one run's noise, not a changed machine: ``benchmarks/results/repeatability.md``);
* ``tied(i, j)``: not separated, and both half-widths are ``<= tie_width``: both medians are known
  to within ``tie_width`` and their speeds differ by less than this measurement resolves (CIs that
  are disjoint but closer than ``tie_width`` are tied: such a pair has both half-widths below it);
* otherwise the pair is *open*.

A stitch is **resolved** when no neighbour pair of it is open; it is **settled** (bench stops
sampling it) when it is resolved or its own half-width is ``<= target``.

Tie groups walk the FLOPs order: a stitch joins the current group when it is tied with the previous
stitch and its CI meets the intersection of the CIs of every member so far (so all members share a
common latency and a group cannot chain across a range wider than one CI); otherwise it starts a
new group. Groups of one are a stitch's own group.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

#: the default target: 95 % CI half-width of the median, relative to the median
DEFAULT_TARGET = 0.02


def half_width(p50: float, ci: Sequence[float]) -> float:
    """Half the CI's width relative to the median (``inf`` for a non-positive median)."""
    return (ci[1] - ci[0]) / 2.0 / p50 if p50 > 0 else float("inf")


def relation(a: Mapping[str, Any], b: Mapping[str, Any], tie_width: float) -> str:
    """``separated``, ``tied`` or ``open`` for two ``{"p50", "ci"}`` measurements."""
    lo, hi = sorted((a["p50"], b["p50"]))
    if (a["ci"][1] < b["ci"][0] or b["ci"][1] < a["ci"][0]) and hi > lo * (1.0 + tie_width):
        return "separated"
    if max(half_width(a["p50"], a["ci"]), half_width(b["p50"], b["ci"])) <= tie_width:
        return "tied"
    return "open"


def flops_order(ids: Sequence[int], flops: Mapping[int, float]) -> list[int]:
    """``ids`` sorted by (FLOPs, id); an id without FLOPs sorts as 0."""
    return sorted(ids, key=lambda i: (flops.get(i, 0.0), i))


def judge(meas: Mapping[int, Mapping[str, Any]], flops: Mapping[int, float], target: float = DEFAULT_TARGET,
          tie_width: float | None = None) -> dict[int, dict[str, Any]]:
    """Per stitch of one batch: ``{"resolved", "settled", "tie_group"}``.

    Args:
        meas: ``{id: {"p50": ms, "ci": [lo, hi]}}`` of one batch.
        flops: ``{id: FLOPs}`` (the neighbour order).
        target: the CI half-width at which a stitch is measured precisely enough.
        tie_width: the half-width both must reach to call a pair tied, and the least relative gap
            of two separated medians (default ``2 * target``).
    """
    width = 2.0 * target if tie_width is None else tie_width
    order = flops_order(list(meas), flops)
    rel = [relation(meas[a], meas[b], width) for a, b in zip(order, order[1:])]
    out: dict[int, dict[str, Any]] = {}
    for k, i in enumerate(order):
        near = ([rel[k - 1]] if k > 0 else []) + ([rel[k]] if k < len(rel) else [])
        resolved = "open" not in near
        out[i] = {"resolved": resolved,
                  "settled": resolved or half_width(meas[i]["p50"], meas[i]["ci"]) <= target}
    for members in _groups(order, rel, meas):
        for i in members:
            out[i]["tie_group"] = sorted(members)
    return out


def _groups(order: list[int], rel: list[str], meas: Mapping[int, Mapping[str, Any]]) -> list[list[int]]:
    groups: list[list[int]] = []
    lo = hi = 0.0
    for k, i in enumerate(order):
        ci = meas[i]["ci"]
        if k > 0 and rel[k - 1] == "tied" and ci[0] <= hi and lo <= ci[1]:
            groups[-1].append(i)
            lo, hi = max(lo, ci[0]), min(hi, ci[1])
        else:
            groups.append([i])
            lo, hi = ci[0], ci[1]
    return groups


def annotate(records: list[dict[str, Any]], flops: Mapping[int, float], target: float = DEFAULT_TARGET) -> None:
    """Set ``resolved`` and ``tie_group`` on every profile record with a CI (in place), batch by batch."""
    for batch in sorted({r["batch"] for r in records}):
        recs = {r["id"]: r for r in records if r["batch"] == batch and "ci95" in r["latency_ms"]}
        meas = {i: {"p50": r["latency_ms"]["p50"], "ci": r["latency_ms"]["ci95"]} for i, r in recs.items()}
        for i, verdict in judge(meas, flops, target).items():
            recs[i]["resolved"] = verdict["resolved"]
            recs[i]["tie_group"] = verdict["tie_group"]
