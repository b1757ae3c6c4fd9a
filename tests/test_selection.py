"""The one stitch-selection parser (``--configs``) every command uses."""
from __future__ import annotations

import pytest

from snnet_export.errors import ConfigError
from snnet_export.selection import format_selection, parse_ranges, select_ids


def test_parses_ids_and_ranges_into_sorted_unique_ids():
    assert select_ids("10-12, 3,0,3", 71) == [0, 3, 10, 11, 12]
    assert select_ids(None, 5) == [0, 1, 2, 3, 4]
    assert select_ids("all", [2, 7]) == [2, 7]
    assert select_ids((0, 1), 71) == [0, 1]  # a sequence, not only a list
    assert select_ids([7, "2"], [2, 7]) == [2, 7]
    assert format_selection([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert parse_ranges("4-6,1") == [(4, 6), (1, 1)]


@pytest.mark.parametrize("text", ["", "  ", ","])
def test_empty_selection_is_refused_not_read_as_all(text):
    with pytest.raises(ConfigError, match="empty stitch selection|bad stitch selection"):
        select_ids(text, 71)
    with pytest.raises(ConfigError, match="empty"):
        select_ids([], 71)


def test_ids_outside_what_is_available_are_named_compactly():
    with pytest.raises(ConfigError, match=r"71-72 are not in family x \(it has 0-70\)"):
        select_ids("70-72", 71, where="family x")
    with pytest.raises(ConfigError, match=r"id\(s\) 1,3 are not in here \(it has 0,2,4\)"):
        select_ids("0-4", [0, 2, 4], where="here")


def test_huge_ranges_are_refused_at_once_with_a_short_message():
    with pytest.raises(ConfigError) as err:
        select_ids("0-999999999", 71)
    assert len(str(err.value)) < 200 and "71-999999999" in str(err.value)
    with pytest.raises(ConfigError) as err:
        select_ids(",".join(str(i) for i in range(0, 400000, 2)), 71)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("text", ["a-b", "3-1", "1-", "-1", "1e3", "0x10", "1;2"])
def test_bad_syntax(text):
    with pytest.raises(ConfigError, match="bad stitch"):
        select_ids(text, 71)


@pytest.mark.parametrize("value", [True, -1, 1.5, None])
def test_bad_ids_in_a_sequence(value):
    with pytest.raises(ConfigError, match="not a non-negative whole number"):
        select_ids([0, value], 71)
