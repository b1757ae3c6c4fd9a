"""Selector interface under faults: which stitch ran, close(), a weight file changed under it."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import REPO
from snnet_export.errors import SelectorError, VerifyError
from snnet_export.runtime import Selector

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


def test_run_with_id_names_the_stitch_that_ran_under_threads(folder):
    with Selector(folder, backend="ort", threads=1) as sel:
        want = {i: sel.run(X, stitch=i) for i in sel.resident}
        assert len(want) >= 2
        budgets = [850.0, 400.0, 250.0]  # each picks another stitch of the synthetic profile
        stop = threading.Event()
        errors: list[str] = []

        def flip() -> None:
            k = 0
            while not stop.is_set():
                sel.set_budget(min_throughput=budgets[k % 3])
                k += 1

        def call() -> None:
            for _ in range(60):
                out = sel.run_with_id(X)
                if not np.allclose(out.logits, want[out.stitch], atol=1e-5):
                    errors.append(f"logits do not come from stitch {out.stitch}")

        flipper = threading.Thread(target=flip)
        flipper.start()
        callers = [threading.Thread(target=call) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        stop.set()
        flipper.join()
        assert not errors, errors[:3]
        assert isinstance(sel(X), np.ndarray)  # sel(x) still returns logits
    with pytest.raises(SelectorError, match="closed"):
        sel(X)
    with pytest.raises(SelectorError, match="closed"):
        sel.run_with_id(X)
    sel.close()  # idempotent


@pytest.mark.parametrize("change", ["truncate", "rewrite", "remove"])
def test_weight_file_changed_under_a_live_selector_is_refused(folder, change):
    sel = Selector(folder, backend="ort", threads=1)
    sel(X)
    path = sel.folder / sel.manifest["weights"]["file"]
    if change == "truncate":
        os.truncate(path, path.stat().st_size // 2)  # a run on this map would die of SIGBUS
    elif change == "rewrite":
        data = path.read_bytes()
        path.write_bytes(data[::-1])
    else:
        path.unlink()
    with pytest.raises(VerifyError, match="under a running Selector"):
        sel(X)
    sel.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_shared_thread_pool_option_runs_on_one_pool(exported):
    """Global ORT pools are per process: measure in a fresh interpreter (threads counted from /proc)."""
    code = (
        "import os, numpy as np\n"
        "from snnet_export.runtime import Selector\n"
        f"sel = Selector({str(exported)!r}, backend='ort', resident='all', shared_threads=1)\n"
        "x = np.zeros((1, 3, 32, 32), np.float32)\n"
        "outs = [sel.run(x, stitch=i) for i in sel.resident]\n"
        "print(len(sel.resident), len(os.listdir('/proc/self/task')))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    stitches, threads = map(int, out.stdout.split())
    assert stitches == 3 and threads <= 3  # before: one pool per session (threads grew with stitches)
