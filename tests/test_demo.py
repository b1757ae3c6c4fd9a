"""The end-to-end demo, fast variant: every step runs for real on digits, then a cached re-run."""
from __future__ import annotations

import json

from click.testing import CliRunner

from snnet_export.cli import cli
from snnet_export.engine_folder.manifest import load_manifest
from snnet_export.engine_folder.integrity import verify_folder


def test_fast_demo_end_to_end_and_cached_rerun(tmp_path):
    work = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["-q", "demo", "--fast", "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-5].startswith("anchors Top-1") and "stitches score between" in lines[-4]
    assert lines[-3].startswith("bench: ") and "resolved against their FLOPs neighbours or tied" in lines[-3]
    assert lines[-2].startswith("Pareto frontier") and lines[-1].startswith("report: ")
    for precision in ("fp32", "fp16"):
        folder = work / precision
        m = load_manifest(folder)
        assert [e["id"] for e in m["configs"]] == [0, 1, 2, 3, 4, 40, 70]
        assert all(e["accuracy"] and 0 <= e["accuracy"]["acc1"] <= 100 for e in m["configs"])
        verify_folder(folder)
        assert (folder / "report.md").is_file() and (folder / "throughput_vs_top1.png").stat().st_size > 10_000
        assert (folder / "report.html").stat().st_size > 1_000_000
        assert list(folder.glob("profile.*.json"))
    records = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert {r["cfg_id"] for r in records} == {0, 1, 2, 3, 4, 40, 70}
    # second run: every step's output exists, so nothing is retrained, re-exported or re-measured
    mtimes = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    again = CliRunner().invoke(cli, ["-q", "demo", "--fast", "--workdir", str(work)])
    assert again.exit_code == 0, again.output
    unchanged = [p for p in mtimes if p.suffix in (".pth", ".onnx", ".bin", ".jsonl") and p.stat().st_mtime_ns == mtimes[p]]
    assert len(unchanged) == len([p for p in mtimes if p.suffix in (".pth", ".onnx", ".bin", ".jsonl")])
