"""Distributed training: two CPU processes with gloo under torchrun end with identical weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from snnet_export.train.distributed import distributed, state_digest
from snnet_export.model.snnet import load_checkpoint, snnet_from_family

SYNC_SCRIPT = """
import json, os, sys
import torch
from snnet_export.train.distributed import distributed, sync_gradients

with distributed("cpu") as ctx:
    a, b, c = (torch.nn.Parameter(torch.zeros(n)) for n in (3, 2, 1))
    a.grad = torch.full((3,), float(ctx.rank + 1))  # both ranks used a
    if ctx.rank == 0:
        b.grad = torch.full((2,), 4.0)  # only rank 0 used b; nobody used c
    sync_gradients([a, b, c], ctx.world, bucket=2)  # bucket=2 forces several all-reduces
    with open(os.path.join(sys.argv[1], f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"world": ctx.world, "a": a.grad.tolist(), "b": b.grad.tolist(), "c": c.grad}, f)
"""


def _torchrun(args: list[str], tmp_path, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_single_process_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed("cpu") as ctx:
        assert (ctx.rank, ctx.world, ctx.device, ctx.is_main) == (0, 1, "cpu", True)
        assert not torch.distributed.is_initialized()


def test_gradient_sync_averages_and_keeps_unused_none(tmp_path):
    (tmp_path / "sync.py").write_text(textwrap.dedent(SYNC_SCRIPT))
    _torchrun(["sync.py", str(tmp_path)], tmp_path, timeout=120)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == {"world": 2, "a": [1.5] * 3, "b": [2.0, 2.0], "c": None}


def test_two_rank_gloo_training_via_cli(tmp_path):
    out = tmp_path / "out"
    _torchrun(["-m", "snnet_export.cli", "-q", "train", "tiny", "--data", "digits", "--epochs", "1",
               "--batch-size", "8", "--steps-per-epoch", "3", "--device", "cpu", "-o", str(out)], tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["history"][0]["steps"] == 3
    digests = summary["rank_state_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks ended with the same weights
    net = load_checkpoint(snnet_from_family("tiny"), out / "snnet.pth")  # strict load
    assert state_digest(net) == digests[0]
    assert set(torch.load(out / "snnet.pth", weights_only=True)) == {"model"}


@pytest.mark.parametrize("bad", ["nowhere"])
def test_cli_bad_data_is_one_line(tmp_path, bad):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["train", "tiny", "--data", str(tmp_path / bad), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["eval", "tiny", str(tmp_path / "x.pth"), "--data", "digits", "--out",
                                   str(tmp_path / "r.jsonl")])
    assert res.exit_code == 1 and "checkpoint" in res.output and len(res.output.strip().splitlines()) == 1
