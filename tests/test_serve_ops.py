"""Operating ``snnet-export serve``: reload under load, a failed reload, a full queue, SIGTERM drain.

Real servers on loopback: one over a symlinked folder (``current -> v1``, then ``v2``, then a
broken version), one over an exported tiny SN-Net whose stitches take long enough per batch that
requests are still queued when the signal arrives.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

from serve_helpers import Server, grpcclient, httpclient, images, infer, served_folder, write_profile
from snnet_export.runtime import Selector


def _point(link, target) -> None:
    """Flip ``link`` to ``target`` atomically (how a new version is published)."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _wait_log(server: Server, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"no '{text}' in the log:\n{server.log()[-3000:]}"
        time.sleep(0.05)


def _wait_pending(server: Server, n: int, timeout: float = 30.0) -> None:
    """Until Triton's metrics show at least ``n`` requests waiting in the model's queue."""
    import re
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        m = re.search(r'^nv_inference_pending_request_count\{[^}]*model="snnet"[^}]*\} (\S+)', body, re.M)
        if m and float(m.group(1)) >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"fewer than {n} requests pending after {timeout} s")


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    v1, v2 = served_folder(root / "v1", seed=0), served_folder(root / "v2", seed=1)
    link = root / "current"
    link.symlink_to(v1)
    return root, link, v1, v2


def test_reload_under_load_drops_nothing_and_a_failed_reload_keeps_serving(versions, tmp_path):
    root, link, v1, v2 = versions
    server = Server(link, tmp_path / "server.log", "--slo-ms", "1000").wait_ready()
    refs = {1: Selector(v1, threads=1), 2: Selector(v2, threads=1)}
    seen: list[tuple[float, int]] = []  # (request start, version that answered)
    failures: list[str] = []
    stop = threading.Event()

    def client_loop(k: int) -> None:
        rng = np.random.default_rng(k)
        client = grpcclient.InferenceServerClient(server.grpc_url) if k % 2 else httpclient.InferenceServerClient(server.url)
        while not stop.is_set():
            x, t0 = images(rng, 1 + k % 2), time.monotonic()
            try:
                logits, ids = infer(client, x, grpc=bool(k % 2))
                match = [v for v, ref in refs.items() if np.allclose(logits, ref.run(x, stitch=int(ids[0])), atol=1e-5)]
                assert len(match) == 1, f"logits match versions {match}"
                seen.append((t0, match[0]))
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        _point(link, v2)
        server.signal(signal.SIGHUP)
        _wait_log(server, "reloaded")
        swapped = time.monotonic()
        time.sleep(1.0)
        broken = root / "v3"
        shutil.copytree(v2, broken)
        (broken / "weights.fp32.bin").write_bytes(b"\0" * 64)  # truncated: the new version cannot load
        _point(link, broken)
        server.signal(signal.SIGHUP)
        _wait_log(server, "reload of")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        code = server.stop()
        for ref in refs.values():
            ref.close()
    assert not failures, failures[:5]
    assert code == 0
    assert seen and seen[0][1] == 1 and sum(v == 1 for _, v in seen) > 10
    after = [v for t, v in seen if t > swapped]
    assert after and set(after) == {2}, "after the reload (and after the failed one) v2 answers"
    log = server.log()
    failed = [line for line in log.splitlines() if "reload of" in line]
    assert len(failed) == 1 and "failed, still serving" in failed[0], failed
    assert "Traceback" not in log
    assert "served per stitch {" in log  # the per-stitch figures, at exit


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory):
    """Two stitches of the tiny family (random weights): ~0.1-0.3 s per batch of 64 on one thread."""
    pytest.importorskip("torch", reason="exporting the tiny SN-Net needs the [train] extra")
    from snnet_export.export.stitches import export_stitches

    out = tmp_path_factory.mktemp("slow") / "tiny"
    export_stitches("tiny", "random", out, configs="0,2", progress=False)
    m = json.loads((out / "manifest.json").read_text())
    for e in m["configs"]:
        e["accuracy"] = {"acc1": 60.0 + e["id"], "acc5": None}
    (out / "manifest.json").write_text(json.dumps(m))
    write_profile(out, {0: 2000.0, 2: 500.0}, batches=(1, 64), gain=lambda b: b ** 0.5)
    return out


@pytest.fixture(scope="module")
def slow_server(slow_folder, tmp_path_factory):
    server = Server(slow_folder, tmp_path_factory.mktemp("slowlog") / "server.log", "--max-queue", "4",
                    "--max-batch", "64", "--max-queue-delay-ms", "0").wait_ready()
    yield server
    server.stop()


def _send_all(server: Server, n: int, x: np.ndarray) -> list[object]:
    """``n`` requests at once (one thread each); per request ``(logits, ids)`` or the error message."""
    out: list[object] = [None] * n

    def one(k: int) -> None:
        try:
            out[k] = infer(httpclient.InferenceServerClient(server.url, network_timeout=120), x, {"stitch": 2})
        except Exception as exc:  # noqa: BLE001
            out[k] = str(exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join()
    return out


def test_a_full_queue_refuses_at_once_and_keeps_serving(slow_server, slow_folder):
    x = images(np.random.default_rng(0), 64).repeat(8, axis=2).repeat(8, axis=3)[:, :, :32, :32].copy()
    out = _send_all(slow_server, 16, x)
    refused = [o for o in out if isinstance(o, str)]
    served = [o for o in out if not isinstance(o, str)]
    assert refused and all("maximum queue size" in r.lower() for r in refused), refused[:3]
    assert len(served) >= 5  # one running + a queue of 4 at the least
    with Selector(slow_folder, threads=1) as ref:
        want = ref.run(x, stitch=2)
    for logits, ids in served:
        assert set(ids.tolist()) == {2}
        np.testing.assert_allclose(logits, want, atol=1e-5, rtol=0)
    logits, ids = infer(httpclient.InferenceServerClient(slow_server.url), x[:1])
    assert logits.shape == (1, 10)


def test_sigterm_drains_queued_requests_and_exits_0_promptly(slow_server):
    x = np.random.default_rng(1).standard_normal((64, 3, 32, 32)).astype(np.float32)
    idle = httpclient.InferenceServerClient(slow_server.url)  # an idle keep-alive connection: held Triton's
    assert idle.is_server_live()  # exit for its whole 30 s timeout before the drain stopped it
    results: list[object] = []
    sender = threading.Thread(target=lambda: results.extend(_send_all(slow_server, 5, x)))
    sender.start()
    _wait_pending(slow_server, 4)  # all five in Triton: four in its queue, one running
    t0 = time.monotonic()
    slow_server.signal(signal.SIGTERM)
    sender.join()
    done = time.monotonic()
    code = slow_server.proc.wait(60)
    exited = time.monotonic()
    idle.close()
    assert code == 0, slow_server.log()[-3000:]
    assert all(not isinstance(r, str) for r in results), results
    assert done - t0 > 0.1, "the requests were still in flight when SIGTERM arrived"
    log = slow_server.log()
    assert "stopping" in log and "drained" in log, log[-3000:]
    assert exited - done < 8.0, f"exit took {exited - done:.1f} s after the last answer:\n{log[-3000:]}"
