"""Helpers of the serve tests: tiny served folders, a real ``snnet-export serve`` process, clients.

The server runs as a child process (``python -m snnet_export.cli serve``) on free loopback ports,
exactly as a user starts it, so its signals (SIGTERM, SIGHUP) and exit code are real.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine_folder import make_engine_folder, write_profile

pytriton = pytest.importorskip("pytriton", reason="needs the [serve] extra: pip install 'snnet-export[serve]'")
httpclient = pytest.importorskip("tritonclient.http", reason="needs the [serve] extra (tritonclient[http,grpc])")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs the [serve] extra (tritonclient[http,grpc])")

#: Top-1 (%) and profiled images/s at batch 1 of the three stitches of :func:`served_folder`
ACCURACY = {0: 70.0, 1: 80.0, 2: 90.0}
SPEED = {0: 3000.0, 1: 2000.0, 2: 1000.0}
BATCHES = (1, 4, 16, 64)


def served_folder(folder: Path, seed: int = 0) -> Path:
    """Three fake stitches (``engine_folder.make_engine_folder``) with known accuracy and a synthetic profile."""
    make_engine_folder(folder, ids=tuple(ACCURACY), batch_max=64, seed=seed)
    m = json.loads((folder / "manifest.json").read_text())
    for e in m["configs"]:
        e["accuracy"] = {"acc1": ACCURACY[e["id"]], "acc5": None}
    (folder / "manifest.json").write_text(json.dumps(m))
    write_profile(folder, SPEED, batches=BATCHES, gain=lambda b: b ** 0.5)
    return folder


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Server:
    """A ``snnet-export serve FOLDER`` child process on free loopback ports."""

    def __init__(self, folder: Path, log: Path, *args: str, verbose: int = 0) -> None:
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = log
        flags = [f"-{'v' * verbose}"] if verbose else []
        cmd = [sys.executable, "-m", "snnet_export.cli", *flags, "serve", str(folder), "--http-port", str(self.http_port),
               "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port), "--threads", "1", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._terminated = False

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 180.0) -> "Server":
        client = httpclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if client.is_model_ready("snnet"):
                    return self
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.25)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self._terminated = self._terminated or sig == signal.SIGTERM

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            if not self._terminated:
                self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def infer(client, x: np.ndarray, params: dict | None = None, grpc: bool = False):
    """``(logits, stitch ids [batch])`` of one request on ``client`` (HTTP or gRPC)."""
    mod = grpcclient if grpc else httpclient
    inp = mod.InferInput("input", list(x.shape), mod.np_to_triton_dtype(x.dtype))
    inp.set_data_from_numpy(x)
    res = client.infer("snnet", [inp], parameters=params)
    return res.as_numpy("logits"), res.as_numpy("stitch").reshape(-1)


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
