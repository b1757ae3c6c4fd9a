"""The digits folder the serve load benchmark runs: ``make demo``'s pipeline, shortened.

``benchmarks/serve_load.py`` uses ``engines/demo/fp32`` when ``make demo`` made it. Otherwise it
runs the same pipeline (:func:`snnet_export.demo.run_demo`: train the three anchors and the SN-Net
on scikit-learn's digits, evaluate, export FP32/FP16 with shared weights, verify, bench) with
fewer epochs and only the stitches that can be on the frontier (the anchors and the stitches on
the committed demo report's frontier plus neighbours), into ``engines/demo-serve``: on a shared
2-core machine the full demo took over an hour instead of its usual 4-5 minutes. The accuracies
are real (digits validation Top-1 of these weights), just lower than the full recipe's.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL = ROOT / "engines" / "demo" / "fp32"
SHORT = ROOT / "engines" / "demo-serve"
#: anchors T/S/B (0-2) and stitches across both stitch ranges, including benchmarks/results/demo's frontier
CONFIGS = "0-2,20,31,34,40,45,51,55,60,65"


def make_demo_folder(workdir: Path = SHORT) -> Path:
    """The FP32 folder of a shortened ``make demo`` run in ``workdir`` (resumes a partial run)."""
    from snnet_export.demo import DemoSettings, run_demo

    settings = DemoSettings(anchor_epochs=4, snnet_epochs=5, configs=CONFIGS, batches=(1, 16), bench_runs=3,
                            bench_seconds=0.05, bench_rounds=2)
    run_demo(workdir, settings, progress=False)
    return workdir / "fp32"


def demo_folder() -> Path:
    """``make demo``'s folder if present, else the shortened one (made on first use)."""
    if (FULL / "manifest.json").is_file():
        return FULL
    if (SHORT / "fp32" / "report.md").is_file():
        return SHORT / "fp32"
    return make_demo_folder()
