"""Data sets: the digits split, image folders, deterministic sharded order, and the errors."""
from __future__ import annotations

import pytest
import torch

from snnet_export.train.data import (DIGITS_MEAN, DIGITS_STD, digits_arrays, digits_splits, epoch_indices,
                               first_images, load_data, random_shift, train_loader)
from snnet_export.errors import DataError
from snnet_export.model.family import family_from_dict, get_family
from snnet_export.model.snnet import snnet_from_family


def _net(num_classes: int, family: str = "tiny"):
    """A weightless (meta) SN-Net of ``family`` with a ``num_classes`` head."""
    spec = get_family(family).to_dict()
    for a in spec["anchors"]:
        a["kwargs"]["num_classes"] = num_classes
    return snnet_from_family(family_from_dict(spec), device="meta")


def test_digits_split_is_fixed_and_stratified():
    x_tr, y_tr, x_va, y_va = digits_arrays()
    assert x_tr.shape == (1437, 8, 8) and x_va.shape == (360, 8, 8)
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert abs(x_tr.mean() - DIGITS_MEAN) < 1e-3 and abs(x_tr.std() - DIGITS_STD) < 1e-3
    counts = torch.bincount(torch.as_tensor(y_va), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    again = digits_arrays()
    assert (again[0] == x_tr).all() and (again[3] == y_va).all()


@pytest.mark.parametrize("size", [(1, 16, 16), (3, 32, 32)])
def test_digits_tensors_match_the_model_input(size):
    splits = digits_splits(size)
    x, y = splits.train[0]
    assert x.shape == size and x.dtype == torch.float32 and 0 <= int(y) < 10
    if size[0] == 3:
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey replicated
    assert splits.shift_fill == pytest.approx(-DIGITS_MEAN / DIGITS_STD)
    assert splits.train_eval is splits.train and len(splits.val) == 360


def test_load_data_digits_for_both_families():
    for family, size in (("tiny", (3, 32, 32)), ("digits", (1, 16, 16))):
        splits = load_data("digits", snnet_from_family(family, device="meta"))
        assert splits.num_classes == 10 and splits.val[0][0].shape == size


def test_class_count_mismatch_is_refused():
    with pytest.raises(DataError, match=r"10 classes but family .* 5-class head"):
        load_data("digits", _net(5))


def _png_tree(root, classes=("a", "b", "c"), per_class=2, splits=("train", "val")):
    from PIL import Image

    for split in splits:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40, 36), color=(40 * c, 10 * i, 200)).save(folder / f"{i}.png")
    return root


def test_image_folder_loads_with_timm_transforms(tmp_path):
    splits = load_data(_png_tree(tmp_path / "imgs"), _net(3))
    assert splits.num_classes == 3 and len(splits.train) == 6 and len(splits.val) == 6
    x, y = splits.val[0]
    assert x.shape == (3, 32, 32) and y == 0
    assert splits.train[5][0].shape == (3, 32, 32) and splits.shift_fill is None
    grey = load_data(tmp_path / "imgs", _net(3, "digits"))  # 1-channel family: grey images
    assert grey.val[0][0].shape == (1, 16, 16)


def test_image_folder_class_mismatch(tmp_path):
    with pytest.raises(DataError, match=r"has 3 classes but family 'tiny' has a 10-class head"):
        load_data(_png_tree(tmp_path / "imgs"), _net(10))


def test_image_folder_errors(tmp_path):
    net = _net(3)
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope", net)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        load_data(tmp_path / "file.txt", net)
    with pytest.raises(DataError, match="no 'val/' subfolder"):
        load_data(_png_tree(tmp_path / "trainonly", splits=("train",)), net)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(DataError, match="train is empty"):
        load_data(tmp_path / "empty", net)
    for split in ("train", "val"):
        (tmp_path / "noimg" / split / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_data(tmp_path / "noimg", net)


def test_epoch_order_is_deterministic_and_sharded():
    a = epoch_indices(103, seed=0, epoch=3)
    assert a == epoch_indices(103, seed=0, epoch=3) and sorted(a) == list(range(103))
    assert a != epoch_indices(103, seed=0, epoch=4) and a != epoch_indices(103, seed=1, epoch=3)
    r0, r1 = epoch_indices(103, 0, 3, rank=0, world=2), epoch_indices(103, 0, 3, rank=1, world=2)
    assert len(r0) == len(r1) == 51 and not set(r0) & set(r1)
    splits = digits_splits((1, 16, 16))
    b1 = [y for _, y in train_loader(splits.train, 64, seed=0, epoch=1)]
    b2 = [y for _, y in train_loader(splits.train, 64, seed=0, epoch=1)]
    assert all(torch.equal(u, v) for u, v in zip(b1, b2)) and sum(len(b) for b in b1) == 1437
    assert first_images(splits.train, 100).shape == (100, 1, 16, 16)


def test_random_shift():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_shift(x, 0, -1.0, g), x)
    y = random_shift(x, 2, -1.0, g)
    assert y.shape == x.shape
    for i in range(2):  # each image is a shifted window of itself padded with the fill value
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2), value=-1.0)
        assert any(torch.equal(y[i], padded[:, dy:dy + 4, dx:dx + 4]) for dy in range(5) for dx in range(5))
