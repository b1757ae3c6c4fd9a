"""``snnet-export serve`` end to end: a real Triton server on loopback, real HTTP and gRPC clients.

Two servers of one tiny folder start together (Triton's start-up is the slow part) and serve
every test of this module: logits equal to ``Selector.run(x, stitch=s)``, the ``stitch`` output,
pinning, budgets, concurrency, every bad input, health, metrics and two replicas behind a client.
"""
from __future__ import annotations

import signal
import threading
import time
import urllib.request

import numpy as np
import pytest

from serve_helpers import ACCURACY, Server, grpcclient, httpclient, images, infer, served_folder
from snnet_export.runtime import Selector
from snnet_export.runtime.adaptive import DEFAULT_WINDOW as WINDOW


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return served_folder(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def servers(folder, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    started = [Server(folder, logs / f"server{i}.log", "--slo-ms", "1000", "--max-queue-delay-ms", "2")
               for i in range(2)]
    try:
        yield [s.wait_ready() for s in started]
    finally:
        for s in started:  # both drain at once
            s.signal(signal.SIGTERM)
        codes = [s.stop() for s in started]
        assert codes == [0, 0], [s.log()[-3000:] for s in started]


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


@pytest.fixture(scope="module")
def reference(folder):
    with Selector(folder, threads=1) as sel:
        yield sel


def test_logits_equal_the_selector_and_the_policy_runs_the_most_accurate(server, reference):
    rng = np.random.default_rng(0)
    http = httpclient.InferenceServerClient(server.url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    for client, is_grpc in ((http, False), (grpc, True)):
        x = images(rng, 3)
        logits, ids = infer(client, x, grpc=is_grpc)
        assert ids.tolist() == [2, 2, 2]  # SLO 1 s and no load: the most accurate stitch
        np.testing.assert_allclose(logits, reference.run(x, stitch=2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stitch", sorted(ACCURACY))
def test_pinning_runs_that_stitch(server, reference, stitch):
    x = images(np.random.default_rng(stitch), 2)
    for is_grpc, client in ((False, httpclient.InferenceServerClient(server.url)),
                            (True, grpcclient.InferenceServerClient(server.grpc_url))):
        logits, ids = infer(client, x, {"stitch": stitch}, grpc=is_grpc)
        assert ids.tolist() == [stitch, stitch]
        np.testing.assert_allclose(logits, reference.run(x, stitch=stitch), atol=1e-5, rtol=0)
    logits, ids = infer(httpclient.InferenceServerClient(server.url), x, {"stitch": str(stitch)})
    assert ids.tolist() == [stitch, stitch]


def test_a_tight_budget_gets_the_fastest_stitch_and_the_slo_comes_back(server, reference):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    x = images(np.random.default_rng(5), 1)
    logits, ids = infer(client, x, {"max_latency_ms": 0.05}, grpc=True)  # nothing fits: the fastest
    assert ids.tolist() == [0]
    np.testing.assert_allclose(logits, reference.run(x, stitch=0), atol=1e-5, rtol=0)
    _, ids = infer(client, x, {"max_latency_ms": 5000}, grpc=True)
    assert ids.tolist() == [0]  # no up-switch within the policy's dwell (1 s) after a down-switch
    time.sleep(1.1)
    # after the dwell, back up once the closed loop allows it: at once in NOMINAL; in CORRECTED (the
    # synthetic profile is off this machine) once stitch 0 has given a full window (W = 20 samples)
    served = []
    for _ in range(WINDOW + 6):
        _, ids = infer(client, x, {"max_latency_ms": 5000}, grpc=True)
        served.append(int(ids[0]))
        if served[-1] == 2:
            break
        time.sleep(0.02)  # a light load: the utilisation floor is not what holds it down
    assert served[-1] == 2 and set(served) <= {0, 2}, served


def test_eight_concurrent_clients_get_their_own_answers(server, reference):
    failures: list[str] = []

    def client_loop(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        is_grpc = k % 2 == 1
        client = (grpcclient.InferenceServerClient(server.grpc_url) if is_grpc
                  else httpclient.InferenceServerClient(server.url))
        for j in range(15):
            x = images(rng, 1 + (j + k) % 4)
            pin = (j + k) % 3 if j % 3 == 0 else None
            try:
                logits, ids = infer(client, x, None if pin is None else {"stitch": pin}, grpc=is_grpc)
                assert len(set(ids.tolist())) == 1 and (pin is None or ids[0] == pin), ids
                np.testing.assert_allclose(logits, reference.run(x, stitch=int(ids[0])), atol=1e-5, rtol=0)
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failures.append(f"client {k} request {j}: {exc}")

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]


def _bad(x: np.ndarray, params: dict | None = None, grpc: bool = False, url: str = "") -> str:
    mod = grpcclient if grpc else httpclient
    client = mod.InferenceServerClient(url)
    with pytest.raises(Exception) as info:  # tritonclient's InferenceServerException
        infer(client, x, params, grpc=grpc)
    assert type(info.value).__name__ == "InferenceServerException"
    return str(info.value)


BAD = [
    ("wrong dtype", lambda rng: images(rng, 2).astype(np.float64), None, "FP64"),
    ("wrong shape", lambda rng: np.zeros((2, 3, 4, 5), np.float32), None, "unexpected shape"),
    ("wrong rank", lambda rng: np.zeros((3, 4, 4), np.float32), None, "unexpected shape"),
    ("too big a batch", lambda rng: np.zeros((65, 3, 4, 4), np.float32), None, "batch-size must be <= 64"),
    ("NaN", lambda rng: np.full((2, 3, 4, 4), np.nan, np.float32), None, "non-finite"),
    ("inf", lambda rng: np.where(np.eye(4, dtype=bool), np.inf, 0).astype(np.float32)[None, None].repeat(3, 1),
     None, "non-finite"),
    ("unknown stitch", lambda rng: images(rng, 1), {"stitch": 42}, "unknown stitch 42"),
    ("stitch not a number", lambda rng: images(rng, 1), {"stitch": "fast"}, "integer stitch id"),
    ("stitch a bool", lambda rng: images(rng, 1), {"stitch": True}, "integer stitch id"),
    ("budget not a number", lambda rng: images(rng, 1), {"max_latency_ms": "soon"}, "max_latency_ms"),
    ("budget negative", lambda rng: images(rng, 1), {"max_latency_ms": -3}, "max_latency_ms"),
    ("budget NaN", lambda rng: images(rng, 1), {"max_latency_ms": "nan"}, "max_latency_ms"),
]


@pytest.mark.parametrize("name,make,params,expect", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_bad_input_is_one_line_and_the_server_keeps_serving(server, reference, name, make, params, expect, grpc):
    rng = np.random.default_rng(7)
    msg = _bad(make(rng), params, grpc, server.grpc_url if grpc else server.url)
    assert expect in msg and "\n" not in msg.strip() and "Traceback" not in msg, msg
    x = images(rng, 1)
    logits, ids = infer(httpclient.InferenceServerClient(server.url), x)
    np.testing.assert_allclose(logits, reference.run(x, stitch=int(ids[0])), atol=1e-5, rtol=0)


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_empty_batch_is_refused(server, grpc):
    msg = _bad(np.zeros((0, 3, 4, 4), np.float32), None, grpc, server.grpc_url if grpc else server.url)
    assert "\n" not in msg.strip() and "Traceback" not in msg and ("empty" in msg or "byte size" in msg), msg


def test_bad_requests_among_good_ones_fail_alone(server, reference):
    """Bad and good requests at once (so that Triton batches them together): only the bad ones fail."""
    results: dict[int, object] = {}

    def one(k: int) -> None:
        x = images(np.random.default_rng(k), 1)
        if k % 4 == 0:
            x[0, 0, 0, 0] = np.nan
        try:
            logits, ids = infer(httpclient.InferenceServerClient(server.url), x)
            results[k] = bool(np.allclose(logits, reference.run(x, stitch=int(ids[0])), atol=1e-5, rtol=0))
        except Exception as exc:  # noqa: BLE001
            results[k] = str(exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] is True for k in results if k % 4), results
    assert all("non-finite" in str(results[k]) for k in results if k % 4 == 0), results


def test_health_ready_and_metrics(server):
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("snnet")
    meta = client.get_model_metadata("snnet")
    assert {o["name"] for o in meta["outputs"]} == {"logits", "stitch"}
    assert meta["inputs"][0]["shape"] == [-1, 3, 4, 4] and meta["inputs"][0]["datatype"] == "FP32"
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    served = [line for line in body.splitlines() if line.startswith('nv_inference_request_success{model="snnet"')]
    assert served and float(served[0].split()[-1]) > 0


def test_two_replicas_behind_a_client_that_spreads_requests(servers, reference):
    clients = [httpclient.InferenceServerClient(s.url) for s in servers]
    before = [_successes(s) for s in servers]
    rng = np.random.default_rng(11)
    for j in range(20):
        x = images(rng, 1 + j % 3)
        logits, ids = infer(clients[j % 2], x)  # round robin, as a load balancer would
        np.testing.assert_allclose(logits, reference.run(x, stitch=int(ids[0])), atol=1e-5, rtol=0)
    after = [_successes(s) for s in servers]
    assert [a - b for a, b in zip(after, before)] == [10, 10]


def _successes(server: Server) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith('nv_inference_request_success{model="snnet"'))
