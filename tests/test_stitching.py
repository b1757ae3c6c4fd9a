"""Configuration enumeration reproduces the published ids."""
from __future__ import annotations

import csv
from pathlib import Path


from snnet_export.model.stitching import enumerate_configs, window_positions

REFERENCE = Path(__file__).resolve().parent / "data" / "official_deit_tsb_stitches.tsv"


def test_window_positions_match_published_layers():
    pos = window_positions(12, 2, 1)
    assert len(pos) == 34
    assert pos[:4] == [((0, 0), 0), ((0, 1), 0), ((1, 0), 0), ((1, 1), 0)]
    for m in range(1, 11):
        assert pos[4 + 3 * (m - 1): 4 + 3 * m] == [((m, m + 1), m), ((m + 1, m), m), ((m + 1, m + 1), m)]


def test_config_ids_in_published_order():
    cfgs = enumerate_configs(3, 12)
    assert len(cfgs) == 71
    assert [c.id for c in cfgs] == list(range(71))
    assert [(c.front, c.end) for c in cfgs[:3]] == [(0, 0), (1, 1), (2, 2)]
    assert all((c.front, c.end, c.stitch_layer[0]) == (0, 1, 0) for c in cfgs[3:37])
    assert all((c.front, c.end, c.stitch_layer[0]) == (1, 2, 1) for c in cfgs[37:])
    assert cfgs[39].position == (1, 0) and cfgs[70].position == (11, 11)
    assert len({c.stitch_layer for c in cfgs if c.stitch_layer}) == 22


def test_paths_equal_reference_table():
    names = ["Ti", "S", "B"]
    rows = list(csv.DictReader(REFERENCE.open(), delimiter="\t"))
    for cfg, row in zip(enumerate_configs(3, 12), rows):
        assert cfg.describe(names, 12) == row["path"]
        if cfg.stitch_layer:
            p, layer = cfg.stitch_layer
            assert row["stitch_layer(stitch_layers.P.L)"] == f"SL{p}{p + 1}.{layer}"


def test_non_nearest_pairs_add_ti_to_b():
    cfgs = enumerate_configs(3, 12, nearest=False)
    assert len(cfgs) == 3 + 3 * 34
    assert {(c.front, c.end) for c in cfgs[3:]} == {(0, 1), (0, 2), (1, 2)}
