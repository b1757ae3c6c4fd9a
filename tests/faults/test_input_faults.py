"""Hostile inputs: YAML, family specs, checkpoints and results files are refused as one line."""
from __future__ import annotations

import pickle

import pytest
import yaml

from snnet_export.errors import CheckpointError, DataError, FamilyError, TargetError
from snnet_export.model.family import get_family


def _tiny_spec(**edit_anchor) -> dict:
    spec = get_family("tiny").to_dict()
    for i, changes in edit_anchor.items():
        spec["anchors"][int(i[1:])]["kwargs"].update(changes)
    return spec


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] +
                 [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(7)] +
                 ["description: *h"])


@pytest.mark.parametrize("text,needle", [
    ("\x00\x01binary\xff", "not a text file"),
    ("name: [unclosed", "not valid YAML"),
    (BOMB, "alias bomb"),
])
def test_bad_yaml_is_one_line(tmp_path, text, needle):
    path = tmp_path / "fam.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\x00" not in text else b"\x00\x01binary\xff")
    with pytest.raises(FamilyError, match=needle) as info:
        get_family(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ['"no"', "no", "off", "yes", "1"])
def test_nearest_must_be_a_real_boolean(tmp_path, value):
    spec = _tiny_spec()
    text = yaml.safe_dump(spec).replace("nearest: true", f"nearest: {value}")
    with pytest.raises(FamilyError, match="stitching.nearest: must be true or false"):
        get_family(_write(tmp_path / "f.yaml", text))


def test_target_yaml_booleans_are_strict(tmp_path):
    from snnet_export.engine_build.targets import load_target

    path = tmp_path / "t.yaml"
    path.write_text("name: t\nprecision: fp16\nversion_compatible: no\n")
    with pytest.raises(TargetError, match="version_compatible"):
        load_target(str(path))


@pytest.mark.parametrize("edit,needle", [
    ({"a2": {"num_classes": 7}}, "same num_classes"),
    ({"a2": {"img_size": (16, 64)}}, "same token grid"),  # 2x8 patches: as many tokens as 4x4, another grid
    ({"a1": {"num_heads": 5}}, "rejects its kwargs"),  # 48 is not divisible by 5
])
def test_inconsistent_anchors_are_refused(tmp_path, edit, needle):
    from snnet_export.model.snnet import snnet_from_family

    with pytest.raises(FamilyError, match=needle):
        snnet_from_family(_write(tmp_path / "f.yaml", _tiny_spec(**edit)), device="meta")


class _Evil:
    """A pickle that would create a marker file when unpickled with weights_only=False."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_never_runs(tmp_path):
    import torch

    from snnet_export.model.checkpoint import torch_load

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"model": _Evil(str(marker))}, f)
    with pytest.raises(CheckpointError) as info:
        torch_load(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)
    path.write_bytes(pickle.dumps(_Evil(str(marker))))  # plain pickle, not a torch zip
    with pytest.raises(CheckpointError):
        torch_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload,needle", [(b"\xff\xfe\x00binary", "not text"), (b'{"cfg_id": 1}\n', "acc1"),
                                            (b'{"cfg_id": 1, "acc1": NaN}\n', "finite")])
def test_bad_results_jsonl_is_one_line(tmp_path, payload, needle):
    from snnet_export.train.evaluate import load_accuracy_table

    path = tmp_path / "r.jsonl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=needle):
        load_accuracy_table(path)


def test_train_config_refuses_nan():
    from snnet_export.train import TrainConfig

    with pytest.raises(ValueError, match="finite"):
        TrainConfig(lr=float("nan"))
