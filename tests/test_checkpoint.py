"""The one checkpoint door: tensors only, never code, one clear line for every bad file."""
from __future__ import annotations

import argparse

import pytest
import torch

from snnet_export.errors import CheckpointError
from snnet_export.model.checkpoint import read_state_dict, torch_load


class _Payload:
    """Unpickling this would create a marker file: it must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"model": {"w": torch.zeros(2)}, "cfg": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"holds a Python object besides tensors \(\w+\.system\)") as err:
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    assert "weights_only=False" not in str(err.value)  # never advise the unsafe route


def test_release_file_with_training_args_loads(tmp_path):
    sd = {"w": torch.arange(3.0)}
    torch.save({"model": sd, "args": argparse.Namespace(lr=0.1, model="levit_256")}, tmp_path / "release.pth")
    assert torch_load(tmp_path / "release.pth")["args"].model == "levit_256"
    assert torch.equal(read_state_dict(tmp_path / "release.pth")["w"], sd["w"])


@pytest.mark.parametrize("content, match", [
    (b"not a checkpoint", "not a readable PyTorch checkpoint"),
    (b"", "not a readable PyTorch checkpoint"),
])
def test_unreadable_files(tmp_path, content, match):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as err:
        read_state_dict(tmp_path / "bad.pth")
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


def test_missing_directory_and_non_state_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match="is not a file"):
        read_state_dict(tmp_path)
    for obj in ({}, [torch.zeros(1)], {"model": {"w": 1}}):
        torch.save(obj, tmp_path / "x.pth")
        with pytest.raises(CheckpointError, match="holds no state dict"):
            read_state_dict(tmp_path / "x.pth")
