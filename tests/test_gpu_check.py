"""benchmarks/gpu_check.py (`make gpu-check`): its no-GPU path, the only one a CPU machine can run.

The GPU steps need CUDA (and TensorRT); here we check that without a GPU it runs nothing, writes no
results file and exits as documented, and that the list of skipped steps is exact.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_a_gpu_it_runs_nothing_and_writes_nothing(gpu_check, no_gpu, tmp_path, capsys):
    out = tmp_path / "results" / "gpu_check.json"
    assert gpu_check.main(["--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    printed = capsys.readouterr().out
    assert "gpu-check: ran nothing and wrote no results file: torch" in printed
    assert "sees no CUDA GPU" in printed
    assert not out.parent.exists() and not (tmp_path / "work").exists()
    assert gpu_check.main(["--out", str(out), "--require-gpu"]) == 3


def test_skipped_steps_are_exact(gpu_check):
    assert gpu_check.skipped_steps(False, False) == ["all steps: no CUDA GPU"]
    assert gpu_check.skipped_steps(True, True) == []
    skipped = gpu_check.skipped_steps(True, False)
    assert len(skipped) == 5 and all("TensorRT is not installed" in s for s in skipped)
    assert [s.split(":")[0] for s in skipped] == [
        "check + FP16 engine build (dgpu)", "stripped + refit engine build (dgpu-stripped)",
        "TensorRT vs ONNX Runtime FP32 output comparison", "TensorRT vs PyTorch FP16 eager benchmark",
        "selector trt backend from 8 threads"]


def test_results_files_of_a_torch_only_run(gpu_check, tmp_path):
    stats = gpu_check.stats([0.002, 0.003, 0.004], 1)
    result = {"status": "ok", "environment": {"gpu": "X"}, "skipped": gpu_check.skipped_steps(True, False),
              "timings": {"0/b1": {"torch_fp16": stats}}}
    gpu_check.write_results(result, tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text())["timings"]["0/b1"]["torch_fp16"]["latency_ms"]["p50"] == 3.0
    md = (tmp_path / "g.md").read_text()
    assert "- TensorRT vs PyTorch FP16 eager benchmark: TensorRT is not installed" in md
    assert "| 0/b1 | 3.0 | - | - |" in md


def test_stripped_target_is_dgpu_under_another_name(gpu_check, tmp_path):
    from snnet_export.engine_build.targets import load_target

    t = load_target(gpu_check.stripped_target(tmp_path))
    dgpu = load_target("dgpu")
    assert t.name == "dgpu-stripped" and (t.batch_max, t.optimization_level, t.max_opset) == (
        dgpu.batch_max, dgpu.optimization_level, dgpu.max_opset)


def test_tensorrt_steps_wiring_against_the_fake_tensorrt(gpu_check, tmp_path, monkeypatch):
    """Steps 2-4 run end to end on the fake TensorRT of tests/trt_fakes.py (CPU, small Gemm
    stitches; PyTorch replaced by NumPy). Checks the wiring only: every figure here is the fake's."""
    from engine_folder import CHW, make_engine_folder, onnxruntime_logits
    from trt_fakes import install_fake

    install_fake(monkeypatch)
    fp32 = make_engine_folder(tmp_path / "fp32", ids=(0, 1))
    fp16 = make_engine_folder(tmp_path / "fp16", ids=(0, 1), precision="fp16")
    monkeypatch.setattr(gpu_check, "CHW", CHW)
    monkeypatch.setattr(gpu_check, "torch_fp16",
                        lambda folder, ids, x: ({i: (lambda: x.sum()) for i in ids}, {"torch": "numpy stand-in"}))
    monkeypatch.setattr(gpu_check, "bench", lambda fns: {k: [1e-3, 2e-3] for k in fns})
    monkeypatch.setattr(gpu_check, "ort_fp32", lambda folder, ids, x: {  # these folders lack the ORT runner's
        i: onnxruntime_logits(folder / f"stitch_{i:03d}.onnx", x) for i in ids})  # manifest fields
    out: dict = {}
    assert gpu_check.trt_steps(fp32, fp16, [0, 1], tmp_path, out) is True
    assert "0 error(s)" in out["check"]
    assert set(out["compare"]) == {0, 1} and all(c["max_abs_diff_stripped_vs_normal"] == 0.0
                                                 for c in out["compare"].values())
    assert set(out["timings"]) == {"0/b1", "1/b1", "0/b16", "1/b16"}
    assert out["selector_threads"]["threads"] == 8 and out["selector_threads"]["errors"] == []
    assert out["selector_threads"]["mismatches"] == 0 and out["selector_threads"]["calls_checked"] == 400
    assert (fp16 / "trt" / "dgpu-stripped").is_dir()
