"""Swin, ResNet, ResNet->Swin and LeViT families (SNNET_FAMILIES.md): ids, FLOPs/params against the
published tables, stitch-layer keys, hand-built forwards, published-layout checkpoints, LS init."""
from __future__ import annotations

import argparse
import copy
import csv
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from snnet_export.errors import CheckpointError, FamilyError
from snnet_export.model.family import family_from_dict
from snnet_export.model.flops import config_records
from snnet_export.model.lsinit import ls_init_
from snnet_export.model.snnet import load_checkpoint, snnet_from_family
from snnet_export.model.stitching import stage_positions

DATA = Path(__file__).resolve().parent / "data"
PUBLISHED = {"swin-tsb": "swin_tsb", "resnet-18-50": "resnet18_50", "resnet18-swin-ti": "resnet18_swin_ti",
             "levit-192-256": "levit_192_256"}
TINY = ("tiny-swin", "tiny-resnet", "tiny-resnet-swin", "tiny-levit")


@pytest.fixture(scope="module")
def nets():
    torch.set_num_threads(1)
    return {name: snnet_from_family(name, seed=0) for name in TINY}


def _images(net, n=2, seed=1):
    return torch.randn(n, *net.input_size, generator=torch.Generator().manual_seed(seed))


# ---- enumeration, FLOPs and params vs the published tables ------------------------------------

def test_stage_positions_follow_the_published_quirk():
    assert stage_positions(2, 4) == [((0, 1), 0), ((1, 2), 0), ((1, 3), 1)]
    assert stage_positions(2, 6) == [((0, 1), 0), ((0, 2), 0), ((1, 3), 0), ((1, 4), 1), ((1, 5), 1)]
    assert stage_positions(4, 4) == [((0, 1), 0), ((1, 2), 1), ((2, 3), 2)]
    six = stage_positions(6, 18)
    assert len(six) == 17 and six[2] == ((1, 3), 0) and six[5] == ((2, 6), 1) and six[-1] == ((5, 17), 5)
    with pytest.raises(FamilyError, match="shallowest to deepest"):
        stage_positions(6, 2)


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_configs_flops_params_equal_published_table(family, single_thread):
    rows = config_records(family)
    with open(DATA / f"official_{PUBLISHED[family]}_stitches.tsv") as fh:
        ref = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == len(ref) == {"swin-tsb": 41, "resnet-18-50": 10, "resnet18-swin-ti": 8,
                                     "levit-192-256": 8}[family]
    for got, want in zip(rows, ref):
        assert got["id"] == int(want["cfg_id"])
        assert got["flops"] == int(want["FLOPs_fvcore"]), got
        if want["Params"] != "-":
            assert got["params"] == int(want["Params"]), got
        if want["stitch_layer"] == "-":
            assert got["stitch_layer"] is None
        else:
            assert want["stitch_layer"] == "stitch_layers." + ".".join(map(str, got["stitch_layer"]))
            assert got["stage"] == int(want["stage"]) and got["position"] == [int(want["j"]), int(want["k"])]


def test_full_size_stitch_layer_keys_and_totals():
    shapes = {"swin-tsb": {"stitch_layers.0.1.0.transform.weight": (128, 96),
                           "stitch_layers.2.0.5.transform.weight": (384, 384),
                           "stitch_layers.2.1.16.transform.weight": (512, 384)},
              "resnet-18-50": {"stitch_layers.0.0.1.transform.weight": (512, 128, 1, 1),
                               "stitch_layers.1.0.1.transform.weight": (1024, 256, 1, 1)},
              "resnet18-swin-ti": {"stitch_layers.0.0.0.transform.weight": (192, 128, 1, 1),
                                   "stitch_layers.1.0.1.transform.bias": (384,)},
              "levit-192-256": {"stitch_layers.1.0.2.transform.weight": (384, 288)}}
    totals = {"swin-tsb": (27, 170_009_108), "resnet-18-50": (4, 37_904_976),
              "resnet18-swin-ti": (3, 40_200_010), "levit-192-256": (6, 30_322_097)}
    for family, expected in shapes.items():
        net = snnet_from_family(family, device="meta")
        sd = net.state_dict()
        layers = {k.rsplit(".", 2)[0] for k in sd if k.startswith("stitch_layers.")}
        assert (len(layers), sum(p.numel() for p in net.parameters())) == totals[family]
        for key, shape in expected.items():
            assert tuple(sd[key].shape) == shape


# ---- hand-built forwards written from the spec -------------------------------------------------

def _lin(net, key, x):
    sd = net.state_dict()
    return x @ sd[f"{key}.transform.weight"].T + sd[f"{key}.transform.bias"]


def _conv(net, key, x):
    sd = net.state_dict()
    return F.conv2d(x, sd[f"{key}.transform.weight"], sd[f"{key}.transform.bias"])


def _swin_end(end, t, s, k):
    for blk in end.layers[s].blocks[k:]:
        t = blk(t)
    for layer in end.layers[s + 1:]:
        t = layer(t)
    return end.head.fc(end.norm(t).mean((1, 2)))


def _resnet_front(front, x, s, j):
    t = front.maxpool(front.act1(front.bn1(front.conv1(x))))
    for i in range(s):
        t = getattr(front, f"layer{i + 1}")(t)
    for blk in getattr(front, f"layer{s + 1}")[: j + 1]:
        t = blk(t)
    return t


def _reference(name, net, x):
    """(config id, logits) of one stitch per family, rebuilt by hand from the spec's 1.4 / x.4."""
    front, end = net.anchors[0], net.anchors[1]
    if name == "tiny-swin":  # Ti -> S stage 2, (1, 3) on layer 0 (the layer-id quirk)
        cfg = next(c for c in net.configs if c.stage == 2 and c.position == (1, 3) and c.front == 0)
        t = front.layers[1](front.layers[0](front.patch_embed(x)))
        t = front.layers[2].blocks[1](front.layers[2].blocks[0](front.layers[2].downsample(t)))
        return cfg.id, _swin_end(end, _lin(net, "stitch_layers.2.0.0", t), 2, 3)
    if name == "tiny-resnet":  # id 7: R18 stage 2 (1, 3) on layer 0
        t = _conv(net, "stitch_layers.1.0.0", _resnet_front(front, x, 2, 1))
        for blk in end.layer3[3:]:
            t = blk(t)
        return 7, end.fc(end.layer4(t).mean((2, 3)))
    if name == "tiny-resnet-swin":  # id 5: (1, 3) on layer 0, conv then NCHW -> NHWC tokens
        t = _conv(net, "stitch_layers.1.0.0", _resnet_front(front, x, 2, 1)).permute(0, 2, 3, 1)
        return 5, _swin_end(end, t, 2, 3)
    # tiny-levit id 6: stage 1 (1, 2) on layer 1; end = both heads averaged
    t = front.stages[0](front.stem(x).flatten(2).transpose(1, 2))
    t = front.stages[1].blocks[1](front.stages[1].blocks[0](front.stages[1].downsample(t)))
    t = _lin(net, "stitch_layers.1.0.1", t)
    for blk in end.stages[1].blocks[2:]:
        t = blk(t)
    t = end.stages[2](t).mean(1)
    return 6, (end.head(t) + end.head_dist(t)) / 2


@pytest.mark.parametrize("name", TINY)
def test_stitched_forward_matches_hand_built_reference(nets, name):
    net = nets[name]
    x = _images(net)
    with torch.no_grad():
        cfg_id, expected = _reference(name, net, x)
        torch.testing.assert_close(net(x, cfg_id), expected, rtol=1e-5, atol=1e-5)
        for i, anchor in enumerate(net.anchors):
            torch.testing.assert_close(net(x, i), anchor(x), rtol=0, atol=0)
        for cfg in net.configs:
            assert net(x, cfg.id).shape == (2, 10)


# ---- published checkpoint layouts (inverse mappings written from the spec) --------------------

def _swin_official(sd, model):
    out = {}
    for k, v in sd.items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        elif k.startswith("head.fc."):
            k = "head." + k.rsplit(".", 1)[1]
        out[k] = v
    for k, v in model.named_buffers():  # relative_position_index and attn_mask were persistent
        if k.endswith(("relative_position_index", "attn_mask")):
            out[k] = v.clone()
    return out


def _resnet_official(sd, model):
    out = dict(sd)
    for k, v in sd.items():  # split-BN auxiliaries under every BN: junk that must be dropped
        m = re.match(r"(.*)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", k)
        if m and v.ndim <= 1 and ("bn" in m.group(1) or m.group(1).endswith("downsample.1")):
            out[f"{m.group(1)}.aux_bn.0.{m.group(2)}"] = torch.rand_like(v.float()).to(v.dtype)
    return out


def _levit_official(sd, model):
    """Facebook layout for depth 4,4,4: stage s block b = entries 10s+2b (attn), 10s+2b+1 (mlp);
    the subsample into stage s = 10s-2 and its MLP 10s-1."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"stem\.conv(\d)\.(linear\.weight|bn\..*)", k)
        if m:
            out[f"patch_embed.{2 * (int(m.group(1)) - 1)}.{m.group(2).replace('linear.weight', 'c.weight')}"] = v
            continue
        m = re.match(r"(head|head_dist)\.(linear|bn)\.(.*)", k)
        if m:
            out[f"{m.group(1)}.{'l' if m.group(2) == 'linear' else 'bn'}.{m.group(3)}"] = v
            continue
        k2 = k.replace("linear.weight", "c.weight")
        m = re.match(r"stages\.(\d)\.blocks\.(\d)\.(attn|mlp)\.(.*)", k2)
        if m:
            s, b, part, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            n = 10 * s + 2 * b + (part == "mlp")
            rest = (rest if rest == "attention_biases" else rest.replace("qkv.", "qkv.").replace("proj.ln.", "proj.1.")
                    ) if part == "attn" else rest.replace("ln1.", "0.").replace("ln2.", "2.")
            out[f"blocks.{n}.m.{rest}"] = v
            continue
        m = re.match(r"stages\.(\d)\.downsample\.(attn_downsample|mlp)\.(.*)", k2)
        s, part, rest = int(m.group(1)), m.group(2), m.group(3)
        if part == "attn_downsample":
            out[f"blocks.{10 * s - 2}.{rest.replace('q.ln.', 'q.1.').replace('proj.ln.', 'proj.1.')}"] = v
        else:
            out[f"blocks.{10 * s - 1}.m.{rest.replace('ln1.', '0.').replace('ln2.', '2.')}"] = v
    for k, v in model.named_buffers():
        if k.endswith("attention_bias_idxs"):
            m = re.match(r"stages\.(\d)\.(?:blocks\.(\d)\.attn|downsample\.attn_downsample)\.", k)
            s = int(m.group(1))
            n = 10 * s + 2 * int(m.group(2)) if m.group(2) is not None else 10 * s - 2
            out[f"blocks.{n}.{'m.' if m.group(2) is not None else ''}attention_bias_idxs"] = v.clone()
    return out


def _official_state(net):
    """The whole SN-Net in the published layout (``anchors.i.<official keys>``)."""
    out = {k: v for k, v in net.state_dict().items() if k.startswith("stitch_layers.")}
    for i, (view, anchor) in enumerate(zip(net.views, net.anchors)):
        conv = {"swin": _swin_official, "resnet": _resnet_official, "levit": _levit_official}[view.arch]
        out.update({f"anchors.{i}.{k}": v for k, v in conv(anchor.state_dict(), anchor).items()})
    return out


@pytest.mark.parametrize("name", TINY)
def test_published_layout_loads_strictly(tmp_path, nets, name):
    net = nets[name]
    official = _official_state(net)
    assert set(official) != set(net.state_dict())
    if name == "tiny-levit":  # 14 attention_bias_idxs per anchor (12 blocks + 2 subsamples)
        assert sum("attention_bias_idxs" in k for k in official) == 28
    key = "state_dict" if "resnet" in name else "model"
    torch.save({key: {f"module.{k}" if name == "tiny-resnet" else k: v for k, v in official.items()},
                "epoch": 3, "args": argparse.Namespace(lr=0.05)}, tmp_path / "release.pth")
    other = snnet_from_family(name, seed=123)
    x = _images(net)
    with torch.no_grad():
        other(x, 0), other(x, len(other.configs) - 1)  # fills LeViT's attention-bias caches
        load_checkpoint(other, tmp_path / "release.pth")
        for k, v in net.state_dict().items():
            torch.testing.assert_close(other.state_dict()[k], v, rtol=0, atol=0, msg=k)
        for cfg in net.configs:
            torch.testing.assert_close(other(x, cfg.id), net(x, cfg.id), rtol=0, atol=0)


def test_swin_mapping_equals_timm_filter(nets):
    from timm.models.swin_transformer import checkpoint_filter_fn

    from snnet_export.model.published import swin_from_official

    anchor = nets["tiny-swin"].anchors[2]
    official = _swin_official(anchor.state_dict(), anchor)
    ours, timms = swin_from_official(official), checkpoint_filter_fn(official, anchor)
    assert set(ours) == set(timms) == set(anchor.state_dict())
    assert all(torch.equal(ours[k], timms[k]) for k in ours)


def test_release_errors_name_the_problem(tmp_path, nets):
    net = nets["tiny-resnet"]
    torch.save({"model": net.state_dict(), "config": CfgNode(a=1)}, tmp_path / "cfg.pth")
    with pytest.raises(CheckpointError, match=r"Python object besides tensors .*CfgNode.*\[.model.\] entry"):
        load_checkpoint(copy.deepcopy(net), tmp_path / "cfg.pth")
    sd = _official_state(net)
    del sd["stitch_layers.1.0.1.transform.bias"]
    sd["anchors.1.fc.weight"] = torch.zeros(3, 3)
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(copy.deepcopy(net), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "missing: stitch_layers.1.0.1.transform.bias" in msg and "mis-shaped: anchors.1.fc.weight (3, 3)" in msg
    assert "aux_bn" not in msg and "family 'tiny-resnet'" in msg


class CfgNode(dict):
    """Stands in for the yacs config object of Microsoft-style Swin releases."""


# ---- YAML kinds and the errors for families that cannot be stitched ---------------------------

def _spec(kind, *anchors, **extra):
    return family_from_dict({"name": "x", "kind": kind, "anchors": list(anchors), **extra})


SW = {"model": "swin_tiny_patch4_window7_224",
      "kwargs": {"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 16, "num_heads": [1, 2, 4, 8],
                 "depths": [1, 1, 2, 1], "num_classes": 10}}


def test_yaml_kinds_and_errors():
    other = {**SW, "kwargs": {**SW["kwargs"], "embed_dim": 24, "depths": [1, 1, 4, 1]}}
    net = snnet_from_family(_spec("swin", {**SW, "name": "a"}, {**other, "name": "b"}), device="meta")
    assert len(net.configs) == 2 + 3  # stage 2 only: (2 -> 4) unpaired; stages 0/1 have depth 1
    with pytest.raises(FamilyError, match="unknown kind 'convnext'"):
        _spec("convnext", SW, SW)
    with pytest.raises(FamilyError, match="is stitched with 'conv1x1'"):
        _spec("resnet", SW, SW, stitching={"layer": "linear"})
    three = {**SW, "kwargs": {**SW["kwargs"], "depths": [1, 1, 2], "num_heads": [1, 2, 4]}}
    with pytest.raises(FamilyError, match="same number of stages"):
        snnet_from_family(_spec("swin", {**SW, "name": "a"}, {**three, "name": "b"}), device="meta")
    coarse = {**SW, "kwargs": {**SW["kwargs"], "patch_size": 4}}
    with pytest.raises(FamilyError, match="different inputs|token grids differ"):
        snnet_from_family(_spec("swin", {**SW, "name": "a"}, {**coarse, "name": "b"}), device="meta")
    r18 = {"model": "resnet18", "kwargs": {"num_classes": 10}}
    with pytest.raises(FamilyError, match="stage 1 token grids differ"):
        snnet_from_family(_spec("resnet-swin", {**r18, "name": "r"}, {**SW, "name": "s"},
                                stitching={"stages": [1]}), device="meta")
    with pytest.raises(FamilyError, match="needs a timm swin model"):
        snnet_from_family(_spec("swin", {**r18, "name": "a"}, {**SW, "name": "b"}), device="meta")


# ---- LS init -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-resnet-swin", "tiny-levit"])
def test_ls_init_is_the_mean_of_per_position_float32_solves(nets, name):
    net = copy.deepcopy(nets[name])
    x = _images(net, n=16, seed=3)
    ls_init_(net, x)
    assert not net.training
    # re-derive layer 1.0.0 (stage 2 of ResNet->Swin, stage 1 of LeViT) independently
    probe = copy.deepcopy(nets[name]).train()
    s = net.stages[1]
    with torch.no_grad():
        feats = [probe.block_features(a, x)[s] for a in (0, 1)]
    ws, bs = [], []
    for cfg in net.configs:
        if cfg.stitch_layer == (1, 0, 0):
            j, k = cfg.position
            xf, yf = feats[0][j], feats[1][k - 1]
            xf = xf.permute(0, 2, 3, 1) if xf.ndim == 4 and name == "tiny-resnet-swin" else xf
            xf, yf = xf.reshape(-1, xf.shape[-1]), yf.reshape(-1, yf.shape[-1])
            a = torch.linalg.pinv(torch.cat([xf, torch.ones(len(xf), 1)], 1)) @ yf
            ws.append(a[:-1].T)
            bs.append(a[-1])
    layer = net.stitch_layers[1][0][0].transform
    torch.testing.assert_close(layer.weight.reshape(len(bs[0]), -1), torch.stack(ws).mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.bias, torch.stack(bs).mean(0), rtol=1e-4, atol=1e-5)
