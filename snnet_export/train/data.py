"""Data sets for training and evaluation: scikit-learn's digits, or an ImageFolder tree.

``load_data("digits", snnet)`` gives the 1,797 8x8 digits with a fixed stratified 80/20 split
(seed 0), scaled to [0, 1], upsampled to the SN-Net's input size and normalised; the whole set
lives in memory as tensors. Any other value is a folder with ``train/`` and ``val/`` subfolders
in ImageNet layout (one subfolder per class), read with torchvision's ``ImageFolder`` and timm's
transforms for the anchors' input size.

Batches come from :func:`train_loader` / :func:`eval_loader`. The training order is a pure
function of ``(seed, epoch)`` and each rank reads its own shard, so an interrupted run resumes
with exactly the batches it would have seen.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

DIGITS = "digits"
DIGITS_MEAN = 0.3054  # pixel mean / std of the digits training split after scaling to [0, 1]
DIGITS_STD = 0.3761
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DataSplits:
    """Train and validation sets matched to one SN-Net's input.

    Attributes:
        train: training set (random train transforms for image folders).
        train_eval: the training images with the deterministic eval transform (LS init reads it).
        val: validation set (eval transform).
        num_classes: classes in the data (equals the SN-Net's head).
        source: ``"digits"`` or the folder path.
        shift_fill: for in-memory tensor data, the normalised background value; training then
            applies random shifts to whole batches (:func:`random_shift`). ``None`` for folders.
    """

    train: Any
    train_eval: Any
    val: Any
    num_classes: int
    source: str
    shift_fill: float | None = None


def load_data(data: str | Path, snnet: Any) -> DataSplits:
    """Data sets for ``snnet`` (an :class:`~snnet_export.model.snnet.SNNet`): ``"digits"`` or a folder.

    Raises:
        DataError: the folder or its ``train``/``val`` subfolders are missing or empty, or the
            number of classes differs from the SN-Net's head.
    """
    if str(data) == DIGITS:
        splits = digits_splits(snnet.input_size)
    else:
        splits = image_folder_splits(data, snnet.input_size, snnet.anchors[0])
    if splits.num_classes != snnet.num_classes:
        raise DataError(
            f"data '{splits.source}' has {splits.num_classes} classes but family "
            f"'{snnet.family.name}' has a {snnet.num_classes}-class head: use a family whose anchors "
            f"are built with num_classes={splits.num_classes} (kwargs in a YAML family spec)")
    log.info("data %s: %d training, %d validation images, %d classes", splits.source,
             len(splits.train), len(splits.val), splits.num_classes)
    return splits


# ---- digits -----------------------------------------------------------------------------------

def digits_arrays(val_fraction: float = DIGITS_VAL_FRACTION, seed: int = DIGITS_SPLIT_SEED) -> tuple[Any, ...]:
    """The digits split as numpy arrays ``(x_train, y_train, x_val, y_val)``, images ``[n,8,8]`` in [0,1]."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # [1797, 8, 8], pixel values 0..16
    x_tr, x_va, y_tr, y_va = train_test_split(images, bunch.target.astype(np.int64), test_size=val_fraction,
                                              stratify=bunch.target, random_state=seed)
    return x_tr, y_tr, x_va, y_va


def digits_tensors(images: Any, input_size: tuple[int, int, int]) -> "torch.Tensor":
    """``[n,8,8]`` images in [0,1] -> normalised ``[n,C,H,W]`` float tensors (bilinear upsampling)."""
    import torch
    import torch.nn.functional as F

    c, h, w = input_size
    if c not in (1, 3):
        raise DataError(f"the digits data set is grey-scale: it feeds 1- or 3-channel models, not {c}")
    x = torch.as_tensor(images, dtype=torch.float32)[:, None]  # [n, 1, 8, 8]
    if (h, w) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)  # [n, 1, H, W]
    x = (x - DIGITS_MEAN) / DIGITS_STD
    return x.expand(-1, c, -1, -1).contiguous()  # [n, C, H, W]


def digits_splits(input_size: tuple[int, int, int]) -> DataSplits:
    """The digits data set as in-memory tensor data sets for ``input_size`` ``(C, H, W)``."""
    import torch
    from torch.utils.data import TensorDataset

    x_tr, y_tr, x_va, y_va = digits_arrays()
    train = TensorDataset(digits_tensors(x_tr, input_size), torch.as_tensor(y_tr))
    val = TensorDataset(digits_tensors(x_va, input_size), torch.as_tensor(y_va))
    return DataSplits(train=train, train_eval=train, val=val, num_classes=10, source=DIGITS,
                      shift_fill=-DIGITS_MEAN / DIGITS_STD)


def random_shift(x: "torch.Tensor", max_shift: int, fill: float, generator: "torch.Generator") -> "torch.Tensor":
    """Shift each image of ``[B,C,H,W]`` by up to ``max_shift`` pixels, filling with ``fill``."""
    import torch
    import torch.nn.functional as F

    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=fill)  # [B, C, H+2m, W+2m]
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


# ---- image folders ----------------------------------------------------------------------------

def _grey_loader(path: str) -> Any:
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("L")


def _check_split_folder(folder: Path, root: Path) -> None:
    if not folder.is_dir():
        raise DataError(f"data folder {root} has no '{folder.name}/' subfolder: expected {root}/train/<class>/*.jpg "
                        f"and {root}/val/<class>/*.jpg (ImageNet layout)")
    classes = [d for d in folder.iterdir() if d.is_dir()]
    if not classes:
        raise DataError(f"{folder} is empty: expected one subfolder per class holding images")
    has_image = any(p.suffix.lower() in IMAGE_EXTENSIONS for d in classes for p in d.rglob("*") if p.is_file())
    if not has_image:
        raise DataError(f"{folder} has class folders but no images ({', '.join(IMAGE_EXTENSIONS)})")


def image_folder_splits(root: str | Path, input_size: tuple[int, int, int], anchor: Any) -> DataSplits:
    """``root/train`` and ``root/val`` as ``ImageFolder`` sets with timm transforms for ``input_size``."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data path {root} does not exist: pass 'digits' or a folder with train/ and val/ subfolders")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder: expected a folder with train/ and val/ subfolders")
    for name in ("train", "val"):
        _check_split_folder(root / name, root)
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    cfg = resolve_data_config({"input_size": tuple(input_size)}, model=anchor)
    kwargs: dict[str, Any] = {}
    if input_size[0] == 1:  # grey-scale model: one-channel images and statistics
        cfg["mean"], cfg["std"] = (sum(cfg["mean"]) / 3,), (sum(cfg["std"]) / 3,)
        kwargs["loader"] = _grey_loader
    train_tf = create_transform(**cfg, is_training=True)
    eval_tf = create_transform(**cfg, is_training=False)
    try:
        train = ImageFolder(str(root / "train"), transform=train_tf, **kwargs)
        train_eval = ImageFolder(str(root / "train"), transform=eval_tf, **kwargs)
        val = ImageFolder(str(root / "val"), transform=eval_tf, **kwargs)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"cannot read image folders under {root}: {exc}") from None
    if train.classes != val.classes:
        raise DataError(f"{root}/train and {root}/val have different class folders "
                        f"({len(train.classes)} vs {len(val.classes)}): they must match")
    return DataSplits(train=train, train_eval=train_eval, val=val, num_classes=len(train.classes), source=str(root))


# ---- loaders ----------------------------------------------------------------------------------

def epoch_indices(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's sample order for ``epoch``: one shared permutation of ``(seed, epoch)``, sharded.

    The tail that does not divide by ``world`` is dropped so every rank takes the same number of
    steps.
    """
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    usable = n - n % world
    return perm[:usable][rank::world].tolist()


def train_loader(dataset: Any, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 workers: int = 0) -> Any:
    """A DataLoader over this rank's shard in the deterministic order of ``(seed, epoch)``."""
    import torch
    from torch.utils.data import DataLoader

    order = epoch_indices(len(dataset), seed, epoch, rank, world)
    g = torch.Generator().manual_seed(seed * 7_919 + epoch * 104_729 + rank)  # worker seeds
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers,
                      generator=g, persistent_workers=False, pin_memory=False)


def eval_loader(dataset: Any, batch_size: int, workers: int = 0) -> Any:
    """A DataLoader over ``dataset`` in order."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


def first_images(dataset: Any, count: int, seed: int = 0) -> "torch.Tensor":
    """``count`` images of ``dataset`` drawn with ``seed`` (the LS-init batch), ``[count, C, H, W]``."""
    import torch

    idx = epoch_indices(len(dataset), seed, epoch=-1)[:count]
    return torch.stack([dataset[i][0] for i in idx])

