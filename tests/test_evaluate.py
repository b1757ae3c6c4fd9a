"""Evaluation: per-configuration Top-1/Top-5/loss as resumable JSON lines, and accuracy tables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snnet_export.errors import CheckpointError, ConfigError, DataError
from snnet_export.train.evaluate import evaluate_config, evaluate_configs, load_accuracy_table, read_results
from snnet_export.model.flops import count_flops, count_params

REFERENCE = Path(__file__).resolve().parent / "data" / "official_deit_tsb_stitches.tsv"


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from snnet_export.model.snnet import save_checkpoint, snnet_from_family

    path = tmp_path_factory.mktemp("ckpt") / "snnet.pth"
    save_checkpoint(snnet_from_family("tiny", seed=0), path)
    return path


def test_evaluate_config_matches_a_hand_count(tiny_net):
    from snnet_export.train.data import digits_splits, eval_loader

    val = digits_splits(tiny_net.input_size).val
    got = evaluate_config(tiny_net, 5, eval_loader(val, 100))
    x, y = val.tensors
    with torch.no_grad():
        logits = tiny_net(x, 5)
    assert got["acc1"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item(), abs=1e-3)
    top5 = (logits.topk(5, 1).indices == y[:, None]).any(1).float().mean().item()
    assert got["acc5"] == pytest.approx(100 * top5, abs=1e-3)
    assert got["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-4)


def test_jsonl_records_and_resume(ckpt, tmp_path, monkeypatch, tiny_net):
    out = tmp_path / "results.jsonl"
    recs = evaluate_configs("tiny", ckpt, "digits", out, "0,3,40")
    assert [r["cfg_id"] for r in recs] == [0, 3, 40]
    for r in recs:
        assert {"cfg_id", "acc1", "acc5", "loss", "flops", "params"} <= set(r)
        assert 0 <= r["acc1"] <= r["acc5"] <= 100 and r["loss"] > 0
        cfg = tiny_net.config(r["cfg_id"])
        assert (r["flops"], r["params"]) == (count_flops(tiny_net, cfg), count_params(tiny_net, cfg))
    lines = out.read_text().splitlines()
    assert [json.loads(line)["cfg_id"] for line in lines] == [0, 3, 40]

    import snnet_export.train.evaluate as ev

    seen: list[int] = []
    real = ev.evaluate_config
    monkeypatch.setattr(ev, "evaluate_config", lambda net, i, *a: seen.append(i) or real(net, i, *a))
    again = evaluate_configs("tiny", ckpt, "digits", out, [0, 1, 3, 40])
    assert seen == [1] and [r["cfg_id"] for r in again] == [0, 1, 3, 40]
    assert out.read_text().splitlines()[:3] == lines  # old lines untouched, one appended
    table = load_accuracy_table(out)
    assert sorted(table) == [0, 1, 3, 40] and table[3]["acc1"] == recs[1]["acc1"]


def test_unfinished_last_line_is_redone(ckpt, tmp_path):
    out = tmp_path / "r.jsonl"
    evaluate_configs("tiny", ckpt, "digits", out, "0")
    out.write_text(out.read_text() + '{"cfg_id": 1, "acc1": 5')  # crash mid-write
    assert [r["cfg_id"] for r in read_results(out)] == [0]
    recs = evaluate_configs("tiny", ckpt, "digits", out, "0-1")
    assert [r["cfg_id"] for r in recs] == [0, 1] and len(out.read_text().splitlines()) == 2


def test_evaluate_errors(ckpt, tmp_path):
    with pytest.raises(ConfigError, match=r"71-75 are not in family tiny \(it has 0-70\)"):
        evaluate_configs("tiny", ckpt, "digits", tmp_path / "r.jsonl", "70-75")
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate_configs("tiny", tmp_path / "none.pth", "digits", tmp_path / "r.jsonl", "0")
    with pytest.raises(DataError, match="does not exist"):
        evaluate_configs("tiny", ckpt, tmp_path / "nodata", tmp_path / "r.jsonl", "0")
    with pytest.raises(CheckpointError, match="does not match family 'digits'"):
        evaluate_configs("digits", ckpt, "digits", tmp_path / "r.jsonl", "0")


@pytest.mark.parametrize("line, match", [
    ("not json", r"r.jsonl:2: not valid JSON"),
    ("[1, 2]", r"r.jsonl:2: expected a JSON object"),
    ('{"cfg_id": "3", "acc1": 5}', r"'cfg_id' must be a non-negative integer"),
    ('{"cfg_id": 3}', r"missing 'acc1'"),
    ('{"cfg_id": 3, "acc1": "high"}', r"'acc1' must be a finite number"),
    ('{"cfg_id": 3, "acc1": 0.5, "acc5": 150}', r"percentages in \[0, 100\]"),
    ('{"cfg_id": 0, "acc1": 50}', r"r.jsonl:2: cfg_id 0 appears twice"),
])
def test_malformed_tables(tmp_path, line, match):
    path = tmp_path / "r.jsonl"
    path.write_text('{"cfg_id": 0, "acc1": 70.1, "acc5": 90.0, "loss": 1.2}\n' + line + "\n")
    with pytest.raises(DataError, match=match):
        load_accuracy_table(path)


def test_table_edge_cases(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_accuracy_table(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_accuracy_table(tmp_path / "empty.jsonl")
    (tmp_path / "ids.jsonl").write_text('{"id": 2, "acc1": 81.9}\n')  # "id" is accepted
    assert load_accuracy_table(tmp_path / "ids.jsonl") == {2: {"acc1": 81.9, "acc5": None, "loss": None}}
    (tmp_path / "bad.tsv").write_text("id\tacc\n1\t2\n")
    with pytest.raises(DataError, match="'cfg_id' and 'Top1'"):
        load_accuracy_table(tmp_path / "bad.tsv")


def test_published_table_imports():
    table = load_accuracy_table(REFERENCE)
    assert len(table) == 71 and table[0]["acc1"] == pytest.approx(70.564)
    assert max(table, key=lambda i: table[i]["acc1"]) == 39 and table[39]["acc5"] is None


def test_between_anchors_rule():
    from snnet_export.train.evaluate import between_anchors

    assert between_anchors(90.0, 88.0, 95.0) == (True, True)
    assert between_anchors(95.5, 88.0, 95.0) == (True, False)  # within 1 point above the better anchor
    assert between_anchors(87.0, 95.0, 88.0) == (True, False)  # anchor order does not matter
    assert between_anchors(86.9, 88.0, 95.0) == (False, False)
    assert between_anchors(97.0, 88.0, 95.0, tolerance=2.0) == (True, False)
