"""The SNNet module: forwards, timm equality, hand-built stitch, checkpoints, LS init."""
from __future__ import annotations

import copy

import pytest
import torch

from snnet_export.errors import CheckpointError, ConfigError
from snnet_export.model.lsinit import block_features, ls_init_
from snnet_export.model.snnet import load_checkpoint, save_checkpoint, snnet_from_family


def test_every_config_runs(tiny_net, images):
    with torch.no_grad():
        for cfg in tiny_net.configs:
            out = tiny_net(images, cfg.id)
            assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_anchor_configs_equal_timm_forward(tiny_net, images):
    with torch.no_grad():
        for i, anchor in enumerate(tiny_net.anchors):
            torch.testing.assert_close(tiny_net(images, i), anchor(images), rtol=0, atol=0)


@pytest.mark.parametrize("head", ["v1", "v2"])
def test_hand_built_stitch_equals_module(tiny_net, images, head):
    import dataclasses

    net = copy.deepcopy(tiny_net)
    net.family = dataclasses.replace(net.family, head=head)
    cfg = net.config(24)  # T[0..7] -> S[7..11], layer 0.6
    assert cfg.position == (7, 7) and cfg.stitch_layer == (0, 6)
    front, end = net.anchors[0], net.anchors[1]
    with torch.no_grad():
        x = front.patch_embed(images)
        x = torch.cat([front.cls_token.expand(len(x), -1, -1), x], dim=1) + front.pos_embed
        for b in range(8):
            x = front.blocks[b](x)
        lin = net.stitch_layers[0][6].transform
        x = x @ lin.weight.T + lin.bias
        for b in range(7, 12):
            x = end.blocks[b](x)
        if head == "v2":
            x = end.norm(x)
        expected = end.head(x[:, 0])
        torch.testing.assert_close(net(images, 24), expected, rtol=1e-5, atol=1e-5)


def test_v1_head_skips_final_norm(tiny_net, images):
    import dataclasses

    v2 = copy.deepcopy(tiny_net)
    v2.family = dataclasses.replace(v2.family, head="v2")
    with torch.no_grad():
        assert not torch.allclose(tiny_net(images, 10), v2(images, 10))
        torch.testing.assert_close(tiny_net(images, 1), v2(images, 1))  # anchors unaffected


def test_select_and_bad_id(tiny_net, images):
    net = copy.deepcopy(tiny_net).select(5)
    with torch.no_grad():
        torch.testing.assert_close(net(images), net(images, 5))
    with pytest.raises(ConfigError, match="ids 0-70"):
        net.select(71)


def test_published_layout_keys(tiny_net):
    keys = set(tiny_net.state_dict())
    assert "anchors.0.cls_token" in keys and "anchors.2.blocks.11.mlp.fc2.bias" in keys
    assert tiny_net.state_dict()["stitch_layers.0.10.transform.weight"].shape == (48, 24)
    assert tiny_net.state_dict()["stitch_layers.1.0.transform.weight"].shape == (96, 48)
    assert not any(k.startswith("stitch_layers.2") for k in keys)


def test_strict_load_of_published_layout(tmp_path, tiny_net, images):
    path = tmp_path / "snnet.pth"
    torch.save({"model": tiny_net.state_dict()}, path)
    other = snnet_from_family("tiny", seed=123)
    with torch.no_grad():
        assert not torch.allclose(other(images, 40), tiny_net(images, 40))
        load_checkpoint(other, path)
        torch.testing.assert_close(other(images, 40), tiny_net(images, 40), rtol=0, atol=0)


def test_save_checkpoint_round_trip(tmp_path, tiny_net):
    path = tmp_path / "ck.pth"
    save_checkpoint(tiny_net, path, epoch=3)
    obj = torch.load(path, weights_only=True)
    assert obj["epoch"] == 3 and set(obj["model"]) == set(tiny_net.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]


def test_bad_checkpoints_name_every_problem(tmp_path, tiny_net):
    sd = dict(tiny_net.state_dict())
    del sd["stitch_layers.0.3.transform.bias"]
    sd["anchors.0.extra.weight"] = torch.zeros(1)
    sd["anchors.1.head.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(copy.deepcopy(tiny_net), tmp_path / "bad.pth")
    msg = str(err.value)
    for part in ("missing: stitch_layers.0.3.transform.bias", "unexpected: anchors.0.extra.weight",
                 "mis-shaped: anchors.1.head.weight (3, 3) != (10, 48)", "family 'tiny'"):
        assert part in msg
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*not a readable PyTorch checkpoint"):
        load_checkpoint(copy.deepcopy(tiny_net), tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(copy.deepcopy(tiny_net), tmp_path / "none.pth")


def _stitch_error(net, images):
    """Mean squared error between each stitching layer's output and its end-anchor target."""
    err = 0.0
    with torch.no_grad():
        feats = [block_features(a, images) for a in net.anchors]
        for cfg in net.configs[3:]:
            j, k = cfg.position
            pred = net.stitch_layer(cfg)(feats[cfg.front][j + 1])
            err += torch.mean((pred - feats[cfg.end][k]) ** 2).item()
    return err


def test_ls_init_reduces_stitching_error(tiny_net):
    net = copy.deepcopy(tiny_net)
    calib = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    held_out = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    before = _stitch_error(net, held_out)
    ls_init_(net, calib)
    after = _stitch_error(net, held_out)
    assert after < 0.8 * before, (before, after)
