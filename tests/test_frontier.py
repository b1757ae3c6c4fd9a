"""The Pareto frontier with tie groups (engine_folder.profile.pareto_front), against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from snnet_export.engine_folder.profile import pareto_front, tie_groups


def brute_force(points, groups=None):
    """Representatives: per group the most accurate, then the faster, then the lower id; a
    representative is on the frontier when no other is at least as good in both and better in one
    (of exact duplicates the lower id stays)."""
    groups = groups or {}
    reps = {}
    for p in points:
        label = groups.get(p[0], p[0])
        reps.setdefault(label, []).append(p)
    reps = [max(ms, key=lambda p: (p[2], p[1], -p[0])) for ms in reps.values()]
    front = []
    for p in reps:
        beaten = any((q[1] >= p[1] and q[2] >= p[2] and (q[1] > p[1] or q[2] > p[2]))
                     or (q[1] == p[1] and q[2] == p[2] and q[0] < p[0]) for q in reps if q is not p)
        if not beaten:
            front.append(p)
    return [p[0] for p in sorted(front, key=lambda p: (p[1], p[0]))]


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_with_and_without_groups(seed):
    rng = np.random.default_rng(seed)
    n = 30
    # coarse values, so equal throughputs and accuracies (and exact duplicates) occur
    pts = [(i, float(rng.integers(1, 12)), float(rng.integers(50, 60))) for i in range(n)]
    assert pareto_front(pts) == brute_force(pts)
    labels = rng.integers(0, 12, n)
    groups = {i: int(min(j for j in range(n) if labels[j] == labels[i])) for i in range(n) if rng.random() < 0.7}
    assert pareto_front(pts, groups) == brute_force(pts, groups)


def test_a_tied_pair_cannot_move_on_or_off_the_frontier_by_noise():
    """A (80 %) and B (78 %) are tied in speed; which one measured faster is noise."""
    slow = (9, 50.0, 85.0)
    for a_speed, b_speed in ((100.0, 103.0), (103.0, 100.0)):
        pts = [slow, (1, a_speed, 80.0), (2, b_speed, 78.0)]
        assert pareto_front(pts, {1: 1, 2: 1}) == [9, 1]  # A stands for the group either way
    # without the tie, B enters and leaves the frontier with the noise
    assert pareto_front([slow, (1, 100.0, 80.0), (2, 103.0, 78.0)]) == [9, 1, 2]
    assert pareto_front([slow, (1, 103.0, 80.0), (2, 100.0, 78.0)]) == [9, 1]


def test_equal_accuracy_in_a_group_keeps_the_faster_then_the_lower_id():
    assert pareto_front([(4, 10.0, 70.0), (3, 11.0, 70.0)], {3: 3, 4: 3}) == [3]
    assert pareto_front([(4, 10.0, 70.0), (3, 10.0, 70.0)], {3: 3, 4: 3}) == [3]
    assert pareto_front([(4, 10.0, 70.0), (3, 10.0, 70.0)]) == [3]  # exact duplicates, no groups


def test_order_of_the_input_does_not_matter():
    pts = [(0, 5.0, 60.0), (1, 5.0, 61.0), (2, 7.0, 60.0), (3, 7.0, 59.0), (4, 2.0, 70.0), (5, 7.0, 60.0)]
    groups = {1: 1, 2: 1}
    want = pareto_front(pts, groups)
    for perm in itertools.permutations(pts):
        assert pareto_front(perm, groups) == want


def test_tie_groups_from_profile_records():
    prof = {"stitches": [{"id": 1, "batch": 1, "tie_group": [1, 2]}, {"id": 2, "batch": 1, "tie_group": [1, 2]},
                         {"id": 3, "batch": 1, "tie_group": [3]}, {"id": 1, "batch": 8, "tie_group": [1]},
                         {"id": 4, "batch": 1}]}
    assert tie_groups(prof, 1) == {1: 1, 2: 1}
    assert tie_groups(prof, 8) == {}
