"""Family registry, YAML specs, FLOPs/params, and the CLI's configs/info commands."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from snnet_export.cli import cli
from snnet_export.errors import FamilyError
from snnet_export.model.family import family_from_yaml, get_family, list_families

REFERENCE = Path(__file__).resolve().parent / "data" / "official_deit_tsb_stitches.tsv"

TINY_YAML = """
name: my-tiny
anchors:
  - {name: a, model: vit_tiny_patch16_224, kwargs: {img_size: 32, patch_size: 8, embed_dim: 24, num_heads: 2, num_classes: 10}}
  - {name: b, model: vit_tiny_patch16_224, kwargs: {img_size: 32, patch_size: 8, embed_dim: 48, num_heads: 4, num_classes: 10}}
stitching: {kernel_size: 2, stride: 1, nearest: true, layer: linear}
head: v2
"""


def test_registry_has_required_families():
    names = {f.name for f in list_families()}
    assert {"deit-tsb", "tiny", "digits"} <= names
    tiny = get_family("tiny")
    assert [a.kwargs["embed_dim"] for a in tiny.anchors] == [24, 48, 96]


def test_yaml_spec_round_trip(tmp_path):
    path = tmp_path / "fam.yaml"
    path.write_text(TINY_YAML)
    spec = family_from_yaml(path)
    assert spec.name == "my-tiny" and spec.head == "v2" and len(spec.anchors) == 2
    result = CliRunner().invoke(cli, ["configs", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2 + 34 and rows[2]["front"] == "a" and rows[2]["end"] == "b"


@pytest.mark.parametrize("text, match", [
    ("anchors: [\n", "not valid YAML"),
    ("name: x\n", "at least two anchors"),
    ("anchors: [{model: vit_tiny_patch16_224}, {model: vit_small_patch16_224}]\nhead: v3\n", "head: must be"),
    ("anchors: [{model: vit_tiny_patch16_224}, {model: vit_small_patch16_224}]\nfoo: 1\n", "unknown key"),
    ("anchors: [{model: vit_tiny_patch16_224}, {model: vit_small_patch16_224}]\n"
     "stitching: {kernel_size: 0}\n", "stitching.kernel_size: must be an integer >= 1"),
])
def test_bad_yaml_specs_are_refused(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FamilyError, match=match):
        family_from_yaml(path)


@pytest.mark.parametrize("args, match", [
    (["configs", "no-such-family"], "unknown family 'no-such-family'"),
    (["info", "{bad}.yaml"], "does not exist"),
])
def test_cli_bad_input_is_one_line(args, match):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert match in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_unknown_timm_model(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("anchors: [{model: no_such_model_xyz}, {model: vit_tiny_patch16_224}]\n")
    result = CliRunner().invoke(cli, ["configs", str(path)])
    assert result.exit_code == 1 and "unknown timm model 'no_such_model_xyz'" in result.output


def test_families_command_lists_registry():
    result = CliRunner().invoke(cli, ["families", "--json"])
    assert result.exit_code == 0
    assert {r["name"] for r in json.loads(result.output)} >= {"deit-tsb", "tiny", "digits"}


def test_deit_flops_and_params_equal_published():
    """Random weights on the meta device: every id's FLOPs and params equal the published table."""
    result = CliRunner().invoke(cli, ["configs", "deit-tsb", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    ref = list(csv.DictReader(REFERENCE.open(), delimiter="\t"))
    assert len(rows) == len(ref) == 71
    for row, pub in zip(rows, ref):
        assert row["id"] == int(pub["cfg_id"]) and row["path"] == pub["path"]
        assert abs(row["flops"] / 1e9 - float(pub["GFLOPs_fvcore"])) <= 0.0001 + 1e-12, row
        assert abs(row["params"] / 1e6 - float(pub["Params_M"])) <= 0.0001 + 1e-12, row
    info = CliRunner().invoke(cli, ["info", "deit-tsb", "--json"])
    assert json.loads(info.output)["total_params"] == 118403448


def test_tiny_flops_follow_the_convention():
    """Tiny anchor T (N=17 tokens, D=24, 8x8x3 patches): check the convention by hand."""
    from snnet_export.model.flops import config_records

    n, d, classes, patch_in = 17, 24, 10, 8 * 8 * 3
    blk = 12 * n * d * d + 2 * n * n * d + 10 * n * d
    expected = 16 * patch_in * d + 12 * blk + 5 * n * d + classes * d
    assert config_records("tiny")[0]["flops"] == expected
