"""The native selector library against the Python Selector: conformance traces replayed through C.

``make test`` builds ``.native-build/release`` (``make native``) before pytest; run alone, this
test builds it first (a minute or two). The seed here differs from ``make native-test``'s.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from snnet_export.conformance import generate_traces, make_trace

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / ".native-build" / "release" / "snnet-select-replay"


@pytest.fixture(scope="module")
def replay() -> Path:
    if shutil.which("cmake") is None and not (ROOT / ".venv" / "bin" / "cmake").exists():
        pytest.skip("no cmake on this machine (make native installs one into .venv)")
    subprocess.run(["make", "-s", "native"], cwd=ROOT, check=True, capture_output=True)
    assert REPLAY.is_file()
    return REPLAY


def test_replay_agrees_on_another_seed(replay, tmp_path):
    summary = generate_traces(seed=424242, count=120, out=tmp_path)
    assert summary["bad"] == 30 and all(summary["families"].values())
    out = subprocess.run([str(replay), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"replayed 120 traces, {summary['events']} events: 0 disagreements" in out.stdout


def test_replay_names_file_and_step_of_a_disagreement(replay, tmp_path):
    trace = make_trace(5, 0)
    step = next(i for i, ev in enumerate(trace["events"]) if ev["op"] == "set_budget" and "id" in ev["expect"])
    trace["events"][step]["expect"]["id"] = -1
    (tmp_path / "trace_bad.json").write_text(json.dumps(trace))
    out = subprocess.run([str(replay), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"DISAGREE trace_bad.json: step {step} (set_budget): id: expected -1, got " in out.stdout


def test_broken_folders_get_the_python_error_kind(replay, tmp_path):
    traces = [make_trace(77, i) for i in range(3, 400, 4)]  # every fourth trace is a broken folder
    kinds = {t["expect_open"]["error"] for t in traces if not t["expect_open"]["ok"]}
    assert kinds == {"manifest", "profile", "selector"}
    for t in traces:
        (tmp_path / f"trace_{t['index']:05d}.json").write_text(json.dumps(t))
    out = subprocess.run([str(replay), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_generate_is_deterministic(tmp_path):
    assert make_trace(9, 13) == make_trace(9, 13)
    assert make_trace(9, 13) != make_trace(10, 13)


def test_conformance_cli(tmp_path):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    res = CliRunner().invoke(cli, ["conformance", "generate", "--seed", "3", "--count", "4", "-o", str(tmp_path / "t")])
    assert res.exit_code == 0 and "wrote 4 traces (3 valid folders, 1 broken" in res.output
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [f"trace_0000{i}.json" for i in range(4)]
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(cli, ["conformance", "folder", "-o", str(tmp_path / "file")])
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["conformance", "folder", "--family", "levit", "-o", str(tmp_path / "f")])
    assert res.exit_code == 0 and {p.name for p in (tmp_path / "f").iterdir()} == {"manifest.json",
                                                                                   "profile.synthetic.json"}
