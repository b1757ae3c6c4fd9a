"""Training the CNN and Swin digits families for real (few steps): anchors learn, Algorithm 1 with
LS init over NCHW maps / token grids trains every stitching layer, resume is exact."""
from __future__ import annotations

import json

import pytest
import torch

from snnet_export.model.snnet import load_checkpoint, read_state_dict, snnet_from_family
from snnet_export.train.evaluate import evaluate_configs
from snnet_export.train import TrainConfig, train_anchors, train_snnet

pytestmark = pytest.mark.usefixtures("single_thread")
ANCHORS = TrainConfig(epochs=3, batch_size=32, steps_per_epoch=15, lr=2e-3, warmup_epochs=0.25, ls_init_images=0)
SHORT = TrainConfig(epochs=2, batch_size=16, steps_per_epoch=3, lr=1e-3, warmup_epochs=0.5, ls_init_images=20)


@pytest.mark.parametrize("family", ["digits-cnn", "digits-swin"])
def test_digits_family_trains_and_evaluates(family, tmp_path):
    anchors = train_anchors(family, "digits", tmp_path / "anchors.pth", ANCHORS)
    summary = json.loads(anchors.with_suffix(".json").read_text())
    assert max(a["acc1"] for a in summary["anchors"]) > 25.0  # chance is 10%; 45 steps only
    out = train_snnet(family, anchors, "digits", tmp_path / "sn", SHORT)
    init, trained = read_state_dict(anchors), read_state_dict(out)
    stitch_keys = [k for k in init if k.startswith("stitch_layers.") and k.endswith("weight")]
    assert stitch_keys and all(not torch.equal(init[k], trained[k]) for k in stitch_keys)  # LS init + steps
    net = load_checkpoint(snnet_from_family(family), out)
    records = evaluate_configs(family, out, "digits", tmp_path / "results.jsonl")
    assert [r["cfg_id"] for r in records] == [c.id for c in net.configs]
    assert all(0.0 <= r["acc1"] <= 100.0 for r in records)


def test_resume_is_exact_with_batchnorm(tmp_path):
    anchors = tmp_path / "a.pth"
    from snnet_export.model.snnet import save_checkpoint

    save_checkpoint(snnet_from_family("digits-cnn", seed=0), anchors)
    straight = train_snnet("digits-cnn", anchors, "digits", tmp_path / "a", SHORT)
    train_snnet("digits-cnn", anchors, "digits", tmp_path / "b", SHORT, stop_after_epochs=1)
    resumed = train_snnet("digits-cnn", anchors, "digits", tmp_path / "b", SHORT)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_rank_gloo_training_keeps_batchnorm_in_sync(tmp_path):
    """Ranks draw different configurations, so each BatchNorm saw different batches: the epoch-end
    reduction of running statistics (timm's --dist-bn reduce) makes the ranks end identical."""
    import os
    import subprocess
    import sys

    from snnet_export.train.distributed import state_digest

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "snnet_export.cli", "-q", "train", "digits-cnn", "--data", "digits", "--epochs", "1", "--batch-size", "8",
           "--steps-per-epoch", "3", "--device", "cpu", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    digests = summary["rank_state_sha256"]
    assert summary["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    assert state_digest(load_checkpoint(snnet_from_family("digits-cnn"), out / "snnet.pth")) == digests[0]
