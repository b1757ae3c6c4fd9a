"""The end-to-end demo on scikit-learn's digits: what ``make demo`` runs.

Train the demo family's anchors from scratch, LS-init and train the SN-Net (Algorithm 1), evaluate
every stitch, export FP32 and FP16 with shared weights, verify, benchmark with ONNX Runtime (and
TensorRT when present), and write the throughput-vs-Top-1 report. Every step writes its output
under ``workdir`` and is skipped when that output already exists, so a second run is quick.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model.family import DEMO_FAMILY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Knobs of the demo; ``fast()`` is the variant the test suite runs."""

    anchor_epochs: int | None = None  # None: train.ANCHOR_CONFIG's default
    snnet_epochs: int | None = None  # None: TrainConfig's default (measured best on digits)
    steps_per_epoch: int | None = None
    configs: str | None = None  # stitches to export/bench (None: all 71)
    batches: tuple[int, ...] = (1, 16)
    bench_runs: int = 5
    bench_seconds: float = 0.1  # per stitch and batch: 142 stitch profiles must fit the demo's budget
    bench_rounds: int = 5  # interleaved rounds over all stitches (see bench.measure)
    bench_ci_target: float = 0.02  # then sample until each is within +-2 % or resolved (bench.sampling)
    bench_time_budget: float = 90.0  # seconds of measuring per folder at most (2 folders: ~3.5 min of bench)
    # one ONNX Runtime thread: the digits stitches are too small to gain from two (stitch 0 at batch 1:
    # 0.22 ms vs 0.29 ms), and with 71 sessions each on its own 2-thread pool some stitches ran
    # 1.2-1.6x slower in one process than in the next (benchmarks/results/repeatability.md)
    bench_threads: int = 1

    @classmethod
    def fast(cls) -> "DemoSettings":
        return cls(anchor_epochs=1, snnet_epochs=1, steps_per_epoch=3, configs="0-4,40,70",
                   batches=(1, 4), bench_runs=3, bench_seconds=0.05, bench_rounds=2, bench_time_budget=3.0)


@dataclass
class DemoResult:
    workdir: Path
    report: Path
    summary: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _step(result: DemoResult, name: str) -> Any:
    class _Timer:
        def __enter__(self) -> None:
            log.info("== %s", name)
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            result.seconds[name] = round(time.perf_counter() - self.t0, 1)

    return _Timer()


def run_demo(workdir: str | Path = "engines/demo", settings: DemoSettings | None = None,
             progress: bool = True) -> DemoResult:
    """Run the whole pipeline on digits into ``workdir``; returns the report path and a summary."""
    from .bench.measure import profile_from_engines
    from .deps import is_tensorrt_available
    from .train.evaluate import evaluate_configs
    from .export.stitches import export_stitches
    from .bench.report import report_from_profile
    from .train import TrainConfig, train_anchors, train_snnet
    from .engine_folder.integrity import verify_folder

    s = settings or DemoSettings()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    result = DemoResult(work, work / "fp32" / "report.md")
    fam = DEMO_FAMILY
    with _step(result, "train anchors"):
        anchors = train_anchors(fam, "digits", work / "anchors.pth", epochs=s.anchor_epochs, progress=progress)
    with _step(result, "train SN-Net"):
        base = TrainConfig()
        cfg = TrainConfig(epochs=s.snnet_epochs or base.epochs, steps_per_epoch=s.steps_per_epoch)
        snnet = train_snnet(fam, anchors, "digits", work / "snnet", cfg, progress=progress)
    with _step(result, "evaluate"):
        records = evaluate_configs(fam, snnet, "digits", work / "results.jsonl", configs=s.configs, progress=progress)
    folders = {p: work / p for p in ("fp32", "fp16")}
    with _step(result, "export + verify"):
        export_stitches(fam, snnet, folders["fp32"], "fp32", configs=s.configs,
                        accuracy=work / "results.jsonl", progress=progress)
        export_stitches(fam, snnet, folders["fp16"], "fp16", configs=s.configs, accuracy=work / "results.jsonl",
                        from_folder=folders["fp32"], progress=progress)
        for folder in folders.values():
            verify_folder(folder)
    backends = ["ort"] + (["trt"] if is_tensorrt_available() else [])
    with _step(result, "benchmark"):
        for folder in folders.values():
            for backend in backends:
                if backend == "trt":
                    from .engine_build import build_engines

                    build_engines(folder, "dgpu", progress=progress)
                profile_from_engines(folder, backend=backend, batches=s.batches, runs=s.bench_runs,
                                     min_seconds=s.bench_seconds, warmup=2, progress=progress, reuse=True,
                                     rounds=s.bench_rounds, ci_target=s.bench_ci_target,
                                     time_budget=s.bench_time_budget, threads=s.bench_threads)
    with _step(result, "report"):
        for folder in folders.values():
            report_from_profile(folder)
    result.summary = _summary(records, folders["fp32"])
    return result


def _summary(records: list[dict[str, Any]], folder: Path) -> list[str]:
    """Three lines: anchors' Top-1, how many stitches interpolate, the frontier."""
    from .train.evaluate import between_anchors
    from .engine_folder.manifest import load_manifest
    from .engine_folder.profile import accuracy_of, find_profile, pareto_front, throughputs, tie_groups

    acc = {r["cfg_id"]: r["acc1"] for r in records}
    manifest = load_manifest(folder)
    anchor_id = {e["front"]: e["id"] for e in manifest["configs"] if e["position"] is None}
    anchors = [acc[i] for i in anchor_id.values() if i in acc]
    between = total = 0
    for e in manifest["configs"]:
        a, b = anchor_id.get(e["front"]), anchor_id.get(e["end"])
        if e["position"] is None or e["id"] not in acc or a not in acc or b not in acc:
            continue
        total += 1
        between += between_anchors(acc[e["id"]], acc[a], acc[b])[0]
    prof = find_profile(folder, "ort")
    lines = ["anchors Top-1 on digits val: " + " / ".join(f"{a:.1f}%" for a in anchors),
             f"{between} of {total} stitches score between their two anchors (within 1 point)"]
    if prof:
        batch = min(prof["batches"])
        t = throughputs(prof, batch)
        pts = [(e["id"], t[e["id"]]["throughput"], accuracy_of(e) or 0.0) for e in manifest["configs"] if e["id"] in t]
        front = pareto_front(pts, tie_groups(prof, batch))
        speeds = [t[i]["throughput"] for i in front]
        q = ((prof.get("quality") or {}).get("batches") or {}).get(str(batch)) or {}
        if "resolved_share" in q:
            lines.append(f"bench: {100 * q['resolved_share']:.0f}% of stitches resolved against their FLOPs neighbours "
                         f"or tied ({len(q['tie_groups'])} tie groups) at batch {batch}")
        lines.append(f"Pareto frontier: {len(front)} stitches from {min(speeds):.0f} to {max(speeds):.0f} img/s "
                     f"at batch {batch} (ONNX Runtime, FP32)")
    return lines
