"""Training: schedule, configuration sampling, anchors from scratch, Algorithm 1, resume."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from snnet_export.errors import CheckpointError
from snnet_export.model.checkpoint import read_state_dict
from snnet_export.model.snnet import load_checkpoint, snnet_from_family
from snnet_export.train import ANCHOR_CONFIG, TrainConfig, train_anchors, train_snnet
from snnet_export.train.loop import config_sampler, lr_factor, read_train_state

SHORT = TrainConfig(epochs=2, batch_size=16, steps_per_epoch=2, lr=1e-3, warmup_epochs=0.5, ls_init_images=20)


pytestmark = pytest.mark.usefixtures("single_thread")


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, total=100, warmup=10, min_ratio=0.01) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(0.01, abs=1e-3)


def test_train_config_is_validated():
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(sampling="sandwich")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")


def test_uniform_sampling_covers_all_ids_evenly(tiny_net):
    sampler = config_sampler(tiny_net, "uniform")
    rng = np.random.default_rng(0)
    counts = Counter(sampler.draw(rng) for _ in range(71 * 200))
    assert set(counts) == set(range(71))
    assert min(counts.values()) > 140 and max(counts.values()) < 260  # expected 200 each


def test_flops_binned_sampling_is_even_over_bins(tiny_net):
    g = np.random.default_rng(1)  # skewed FLOPs: many cheap configurations, few costly ones
    flops = {i: int(1e6 * (1 + 9 * g.random() ** 3)) for i in range(71)}
    sampler = config_sampler(tiny_net, "flops-binned", flops_bins=4, flops=flops)
    assert sorted(i for b in sampler.bins for i in b) == list(range(71))
    for lo, hi in zip(sampler.bins, sampler.bins[1:]):
        assert max(flops[i] for i in lo) <= min(flops[i] for i in hi)
    assert len(sampler.bins[0]) > 3 * len(sampler.bins[-1])
    which = {i: b for b, ids in enumerate(sampler.bins) for i in ids}
    rng = np.random.default_rng(0)
    per_bin = Counter(which[sampler.draw(rng)] for _ in range(8000))
    for b in range(len(sampler.bins)):
        assert abs(per_bin[b] / 8000 - 1 / len(sampler.bins)) < 0.03
    only = config_sampler(tiny_net, "flops-binned", 4, ids=range(3, 71), flops=flops)
    assert 0 not in {i for b in only.bins for i in b}


def test_per_rank_draws_are_reproducible():
    from snnet_export.train.loop import _epoch_rngs

    draws = [_epoch_rngs(0, 2, r)[0].integers(0, 71, 20).tolist() for r in (0, 0, 1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]


@pytest.fixture(scope="module")
def anchors(tmp_path_factory):
    """Tiny anchors trained from scratch on digits for a few steps (shared by the tests below)."""
    out = tmp_path_factory.mktemp("anchors") / "anchors.pth"
    cfg = TrainConfig(epochs=4, batch_size=32, steps_per_epoch=8, lr=2e-3, warmup_epochs=0.25, ls_init_images=0)
    train_anchors("tiny", "digits", out, cfg)
    return out


def test_train_anchors_learns_and_leaves_stitches_alone(anchors):
    summary = json.loads(anchors.with_suffix(".json").read_text())
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0] and len(losses) == 4
    assert [a["name"] for a in summary["anchors"]] == ["T", "S", "B"]
    assert max(a["acc1"] for a in summary["anchors"]) > 15.0  # chance is 10%; 32 steps only
    sd = read_state_dict(anchors)
    untouched = snnet_from_family("tiny", seed=0).state_dict()  # same seed, same initial weights
    for key, value in sd.items():
        if key.startswith("stitch_layers."):
            assert torch.equal(value, untouched[key]), key
    assert not torch.equal(sd["anchors.0.head.weight"], untouched["anchors.0.head.weight"])
    assert set(torch.load(anchors, weights_only=True)) == {"model"}  # published layout


def test_train_anchors_reuses_existing_output(anchors, monkeypatch):
    import snnet_export.train.recipes as recipes

    monkeypatch.setattr(recipes, "fit", lambda *a, **k: pytest.fail("retrained"))
    assert train_anchors("tiny", "digits", anchors, ANCHOR_CONFIG) == anchors


def test_train_snnet_writes_published_layout(anchors, tmp_path):
    out = train_snnet("tiny", anchors, "digits", tmp_path / "sn", SHORT)
    assert out == tmp_path / "sn" / "snnet.pth"
    assert set(torch.load(out, weights_only=True)) == {"model"}
    load_checkpoint(snnet_from_family("tiny"), out)  # strict
    state = read_train_state(tmp_path / "sn" / "last.pth")
    assert state["epoch"] == 2 and {"optimizer", "scheduler", "rng", "train_config"} <= set(state)
    summary = json.loads((tmp_path / "sn" / "summary.json").read_text())
    assert [h["steps"] for h in summary["history"]] == [2, 2] and summary["world_size"] == 1
    init, trained = read_state_dict(anchors), read_state_dict(out)
    assert not torch.equal(init["stitch_layers.0.0.transform.weight"], trained["stitch_layers.0.0.transform.weight"])


def test_resume_gives_the_same_weights(anchors, tmp_path):
    straight = train_snnet("tiny", anchors, "digits", tmp_path / "a", SHORT)
    first = train_snnet("tiny", anchors, "digits", tmp_path / "b", SHORT, stop_after_epochs=1)
    assert first == tmp_path / "b" / "last.pth" and not (tmp_path / "b" / "snnet.pth").exists()
    assert read_train_state(first)["epoch"] == 1
    resumed = train_snnet("tiny", anchors, "digits", tmp_path / "b", SHORT)  # picks up last.pth
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hist_a = json.loads((tmp_path / "a" / "summary.json").read_text())["history"]
    hist_b = json.loads((tmp_path / "b" / "summary.json").read_text())["history"]
    assert [h["loss"] for h in hist_a] == [h["loss"] for h in hist_b]


def test_stitches_only_freezes_anchors(anchors, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=16, steps_per_epoch=3, train_stitches_only=True,
                      sampling="flops-binned", ls_init_images=20)
    out = train_snnet("tiny", anchors, "digits", tmp_path / "s", cfg)
    init, trained = read_state_dict(anchors), read_state_dict(out)
    assert all(torch.equal(init[k], trained[k]) for k in init if k.startswith("anchors."))
    assert any(not torch.equal(init[k], trained[k]) for k in init if k.startswith("stitch_layers."))


def test_bad_resume_file(tmp_path, anchors):
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train_snnet("tiny", None, "digits", tmp_path / "x", SHORT, resume=anchors)
