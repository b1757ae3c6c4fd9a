"""Progress output that suits where it goes: a tqdm bar on a terminal, plain lines (no ``\\r``) elsewhere."""
from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from snnet_export.progress import Progress, progress_bar

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def info_logging(caplog):
    """The CLI's default level (INFO): below it, as under pytest's WARNING root, progress is quiet."""
    caplog.set_level(logging.INFO)


def test_export_to_a_log_file_writes_one_plain_line_per_stitch(tmp_path):
    """The real CLI, stderr to a file (not a terminal): one line per stitch, no carriage return."""
    log = tmp_path / "export.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with log.open("wb") as err:
        proc = subprocess.run([sys.executable, "-m", "snnet_export.cli", "export", "tiny", "random",
                               "-o", str(tmp_path / "e"), "--configs", "0,1,70"],
                              stdout=subprocess.PIPE, stderr=err, env=env, timeout=300)
    text = log.read_bytes()
    assert proc.returncode == 0, text.decode(errors="replace")
    assert b"\r" not in text
    lines = [ln for ln in text.decode().splitlines() if ln.startswith("export fp32:")]
    assert [re.match(r"export fp32: (\d+)/3 stitch, [\d.]+ s \(id (\d+) [\d.]+s\)$", ln).groups()
            for ln in lines] == [("1", "0"), ("2", "1"), ("3", "70")], lines


def _read_all(fd: int) -> bytes:
    out = b""
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


def test_a_terminal_gets_a_tqdm_bar():
    """On a pseudo-terminal the helper decides by itself (isatty) to draw a bar, redrawn with ``\\r``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            bar = Progress(range(3), "export fp32", unit="stitch", stream=stream)
            assert bar.tty
            for i in bar:
                bar.set_postfix_str(f"id {i}")
            stream.flush()
        out = _read_all(master).decode(errors="replace")
    finally:
        os.close(master)
        os.close(slave)
    assert "export fp32: 100%" in out and "3/3" in out and "█" in out and "id 2" in out, out
    assert re.search("\r(?!\n)", out), out  # redrawn in place (the pty turns "\n" into "\r\n")


def test_off_a_terminal_a_line_per_item_and_nothing_when_disabled():
    stream = io.StringIO()
    bar = Progress(["a", "b"], "eval", unit="cfg", stream=stream)
    assert not bar.tty and list(bar) == ["a", "b"]
    assert [ln.split(",")[0] for ln in stream.getvalue().splitlines()] == ["eval: 1/2 cfg", "eval: 2/2 cfg"]
    quiet = io.StringIO()
    assert list(Progress(["a"], "eval", stream=quiet, enabled=False)) == ["a"] and quiet.getvalue() == ""


def test_under_dash_q_nothing_is_written(caplog):
    caplog.set_level(logging.WARNING)  # what `snnet-export -q` configures (a root handler above INFO)
    stream = io.StringIO()
    for tty in (False, True):
        list(Progress(range(3), "export", stream=stream, tty=tty))
    assert stream.getvalue() == ""


def test_long_loops_write_one_line_per_interval_and_a_last_one():
    """Training steps: off a terminal at most one line per ``every_seconds`` (a clock is injected)."""
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(None, "epoch 1/1", unit="step", total=95, every_seconds=10.0, stream=stream,
                   clock=lambda: now[0])
    for step in range(95):
        now[0] += 1.0  # one second per step
        bar.set_postfix_str(f"loss {1.0 / (step + 1):.3f}")
        bar.update()
    bar.close()
    bar.close()  # idempotent
    lines = stream.getvalue().splitlines()
    counts = [int(re.match(r"epoch 1/1: (\d+)/95 step", ln).group(1)) for ln in lines]
    assert counts == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert lines[-1] == "epoch 1/1: 95/95 step, 95.0 s (loss 0.011)"


def test_progress_bar_is_the_loops_helper():
    stream_items = progress_bar([1, 2], "x", disable=True)
    assert isinstance(stream_items, Progress) and list(stream_items) == [1, 2]
    assert progress_bar(None, "bench ort", total=4, disable=True).total == 4
