"""``report_from_profile`` and ``snnet-export report`` on a synthetic manifest and profile."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnet_export.bench.measure import BenchError
from snnet_export.engine_folder.manifest import SCHEMA, SCHEMA_VERSION
from snnet_export.bench.report import flops_fit, report_from_profile
from snnet_export.engine_folder.profile import PROFILE_SCHEMA, pareto_front

# id, front, end, position, GFLOPs, Top-1, throughput at batch 1 / batch 8 (images/s)
STITCHES = [
    (0, "T", "T", None, 1.0, 72.0, 900.0, 1500.0),
    (1, "S", "S", None, 4.0, 79.5, 300.0, 500.0),
    (2, "B", "B", None, 16.0, 81.8, 90.0, 140.0),
    (3, "T", "S", [0, 0], 3.8, 78.0, 320.0, 520.0),
    (4, "T", "S", [5, 6], 2.5, 77.0, 450.0, 760.0),
    (5, "T", "S", [9, 10], 1.5, 70.0, 500.0, 1000.0),  # slower than T and less accurate: off the frontier
    (6, "S", "B", [1, 2], 14.0, 81.0, 100.0, 160.0),
    (7, "S", "B", [6, 7], 9.0, 80.6, 160.0, 250.0),
]


def make_folder(folder: Path, accuracy: bool = True, profile: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    configs = [{"id": i, "path": f"{f}->{e} {pos}" if pos else f"anchor {f}", "front": f, "end": e,
                "position": pos, "flops": int(g * 1e9), "params": int(g * 5e6),
                "accuracy": {"acc1": acc, "acc5": 95.0, "loss": 1.0} if accuracy else None,
                "onnx": f"stitch_{i:03d}.onnx", "onnx_sha256": "0" * 64, "initializers": []}
               for i, f, e, pos, g, acc, _, _ in STITCHES]
    # a complete manifest header (load_manifest checks the schema); the graphs themselves are not needed
    manifest = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "family": {"name": "toy"},
                "precision": "fp32", "input_shape": [3, 32, 32], "num_classes": 10,
                "weights": {"file": "weights.fp32.bin", "size": 0, "sha256": None, "tensors": []}, "configs": configs}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if profile:
        recs = []
        for i, *_, t1, t8 in STITCHES:
            for batch, thr in ((1, t1), (8, t8)):
                p50 = batch * 1e3 / thr
                recs.append({"id": i, "batch": batch, "throughput": thr, "runs": 10,
                             "latency_ms": {"mean": p50, "p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3}})
        prof = {"schema": PROFILE_SCHEMA, "version": 1, "device": "cpu-toy", "backend": "ort", "precision": "fp32",
                "environment": {"cpu": "Toy CPU", "threads": 2, "onnxruntime": "1.0", "ort": {"mode": "shared"}},
                "batches": [1, 8], "stitches": recs,
                "baseline": {"torch": [{**r, "throughput": r["throughput"] / 2} for r in recs]}}
        (folder / "profile.cpu-toy.json").write_text(json.dumps(prof))
    return folder


def frontier_ids(md: str) -> list[int]:
    table = md.split("## Pareto frontier")[1].split("\n## ")[0]
    return [int(line.split("|")[1]) for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| id")]


def expected_front(batch: int, accuracy: bool) -> list[int]:
    col = 6 if batch == 1 else 7
    return pareto_front((s[0], s[col], s[5] if accuracy else s[4]) for s in STITCHES)


def test_report_writes_markdown_and_plots(tmp_path):
    folder = make_folder(tmp_path / "f")
    path = report_from_profile(folder)
    assert path == folder / "report.md"
    assert (folder / "throughput_vs_top1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (folder / "throughput_vs_top1.svg").read_text()
    md = path.read_text()
    assert "throughput_vs_top1.png" in md and "Toy CPU" in md and "Accuracy unknown" not in md
    assert "R^2 =" in md and "geometric mean **2.00x**" in md


@pytest.mark.parametrize("batch", [1, 8])
def test_frontier_table_matches_pareto_front(tmp_path, batch):
    folder = make_folder(tmp_path / "f")
    ids = frontier_ids(report_from_profile(folder, batch=batch).read_text())
    assert ids == expected_front(batch, accuracy=True)
    assert 5 not in ids and {0, 2} <= set(ids)


def test_flops_proxy_when_accuracy_unknown(tmp_path):
    folder = make_folder(tmp_path / "f", accuracy=False)
    md = report_from_profile(folder).read_text()
    assert "Accuracy unknown" in md and "GFLOPs stand in for Top-1" in md
    assert frontier_ids(md) == expected_front(1, accuracy=False)


def test_profile_argument_and_bad_batch(tmp_path):
    folder = make_folder(tmp_path / "f")
    prof = json.loads((folder / "profile.cpu-toy.json").read_text())
    assert frontier_ids(report_from_profile(folder, profile=prof, batch=8).read_text()) == expected_front(8, True)
    with pytest.raises(BenchError, match="no measurement at batch 3"):
        report_from_profile(folder, batch=3)


def test_no_profile_yet(tmp_path):
    folder = make_folder(tmp_path / "f", profile=False)
    with pytest.raises(BenchError, match="snnet-export bench"):
        report_from_profile(folder)


def test_flops_fit_on_a_line():
    from snnet_export.bench.report import Point

    pts = [Point(i, "", "T", True, 1.0, 2.0 * g + 1.0, 0.0, None, g, 1.0) for i, g in enumerate((1.0, 2.0, 5.0))]
    fit = flops_fit(pts)
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    assert flops_fit(pts[:2]) is None


def test_cli_report(tmp_path):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    folder = make_folder(tmp_path / "f")
    res = CliRunner().invoke(cli, ["report", str(folder), "--batch", "8"])
    assert res.exit_code == 0, res.output
    assert "report.md" in res.output and (folder / "throughput_vs_top1.svg").exists()


@pytest.mark.parametrize("kind, message", [
    ("no-profile", "run `snnet-export bench"),
    ("no-folder", "not an engine folder"),
    ("bad-batch", "no measurement at batch 5"),
])
def test_cli_report_errors(tmp_path, kind, message):
    from click.testing import CliRunner

    from snnet_export.cli import cli

    folder = tmp_path / "f"
    if kind != "no-folder":
        make_folder(folder, profile=kind != "no-profile")
    args = ["report", str(folder)] + (["--batch", "5"] if kind == "bad-batch" else [])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_unresolved_frontier_stitches_are_marked(tmp_path):
    """A frontier stitch whose throughput CI overlaps its more accurate neighbour's is marked."""
    folder = make_folder(tmp_path / "ci")
    path = folder / "profile.cpu-toy.json"
    prof = json.loads(path.read_text())
    for r in prof["stitches"]:  # +-2 % CIs, except stitch 7 at batch 1: +-40 %, overlapping stitch 6
        w = 0.4 if (r["id"], r["batch"]) == (7, 1) else 0.02
        r["throughput_ci95"] = [r["throughput"] * (1 - w), r["throughput"] * (1 + w)]
        p50 = r["latency_ms"]["p50"]
        r["latency_ms"]["ci95"] = [p50 / (1 + w), p50 / (1 - w)]
    prof["quality"] = {"max_rel_ci": 0.1, "batches": {"1": {"median_rel_ci": 0.04, "max_rel_ci": 1.1, "noisy": [7],
                                                            "rankable": False}}}
    path.write_text(json.dumps(prof))
    md = report_from_profile(folder, batch=1).read_text()
    assert frontier_ids(md) == expected_front(1, True)  # the frontier itself is unchanged
    front = md.split("## Pareto frontier")[1].split("\n## ")[0]
    marked = [int(line.split("|")[1]) for line in front.splitlines() if "(not resolved)" in line]
    assert marked == [7]
    assert "1 frontier stitch(es) marked *not resolved*" in md
    assert "**Warning**: batch 1: 1 stitch(es)" in md
    md8 = report_from_profile(folder, batch=8).read_text()
    front8 = md8.split("## Pareto frontier")[1].split("\n## ")[0]
    # at batch 8, stitch 3 (520 +-2 %) is not resolved from the more accurate anchor S (500 +-2 %)
    assert [int(line.split("|")[1]) for line in front8.splitlines() if "(not resolved)" in line] == [3]


def test_unresolved_on_front_rule():
    from snnet_export.engine_folder.profile import unresolved_on_front

    front = [2, 6, 7, 1]  # slowest first
    ci = {2: (85, 95), 6: (95, 105), 7: (104, 200), 1: (250, 260)}
    assert unresolved_on_front(front, ci) == {6, 7}  # 6 touches 2 at 95; 7 overlaps 6
    assert unresolved_on_front(front, {2: None, 6: (95, 105)}) == set()
