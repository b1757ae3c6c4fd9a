"""The Selector and bench with TensorRT engines (fakes): this GPU's profile, and auto's fallback to ORT."""
from __future__ import annotations

import importlib
import json
import warnings

import pytest
from engine_folder import make_engine_folder

import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export.engine_build import build_engines
from snnet_export.errors import BuildError
from snnet_export.engine_folder.manifest import load_manifest
from trt_fakes import VERSIONS, install_fake

@pytest.fixture()
def fake(monkeypatch):
    return install_fake(monkeypatch)


# ---- selector + bench: this GPU's profile, and auto's fallback --------------------------------

def _trt_profile(folder, device: str, speed: float) -> None:
    from snnet_export.engine_folder.profile import PROFILE_SCHEMA, profile_path

    stitches = [{"id": i, "batch": 1, "throughput": speed * (i + 1), "runs": 3,
                 "latency_ms": {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}} for i in range(3)]
    prof = {"schema": PROFILE_SCHEMA, "version": 1, "device": device, "backend": "trt", "precision": "fp32",
            "target": "dgpu", "environment": {}, "batches": [1], "stitches": stitches}
    profile_path(folder, device, "trt").write_text(json.dumps(prof))


def test_selector_uses_the_trt_profile_bench_saved_for_this_gpu(tmp_path, fake):
    from snnet_export.bench.measure import profile_from_engines
    from snnet_export.runtime import Selector

    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    measured = profile_from_engines(folder, backend="trt", batches=[1], warmup=0, runs=1, min_seconds=0.0,
                                    progress=False)
    assert measured["device"] == "gpu-fakegpu" and (folder / "profile.gpu-fakegpu.trt.json").is_file()
    _trt_profile(folder, "gpu-nvidia-h100-80gb-hbm3", 1000.0)  # another GPU's, and newer
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*profile measured")  # this GPU's is found: no warning
        sel = Selector(folder, backend="trt", resident="none")
    assert sel.profile["device"] == "gpu-fakegpu" and sel.profile["stitches"] == measured["stitches"]


@pytest.mark.parametrize("case, why", [
    ("other tensorrt", "built by TensorRT 10.3.0.30 but this machine has TensorRT 10.13.0.35"),
    ("other gpu", "built for compute capability 9.0 (H100)"),
    ("no gpu", "no usable CUDA GPU (CUDA call cudaSetDevice(0) failed"),
    ("other target", "target jetson-orin: no engines were built for it"),
])
def test_auto_backend_falls_back_to_onnxruntime_and_says_why(tmp_path, monkeypatch, case, why):
    from snnet_export.engine_folder.manifest import save_manifest
    from snnet_export.engine_folder.profile import device_name
    from snnet_export.runtime import Selector

    fake = install_fake(monkeypatch, VERSIONS["10.3"])
    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    _trt_profile(folder, "gpu-fakegpu", 100.0)
    _trt_profile(folder, device_name("ort"), 10.0)  # an ORT profile for the fallback
    prof = json.loads((folder / f"profile.{device_name('ort')}.trt.json").read_text())
    (folder / f"profile.{device_name('ort')}.trt.json").unlink()
    (folder / f"profile.{device_name('ort')}.json").write_text(json.dumps({**prof, "backend": "ort"}))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend 'auto'")
        assert Selector(folder, resident="none").backend == "trt"  # this machine can run them
    target = None
    if case == "other tensorrt":
        fake.trt.__version__ = "10.13.0.35"
    elif case == "other gpu":
        manifest = load_manifest(folder)
        for rec in manifest["engines"]["dgpu"]["stitches"]:
            rec["gpu"] = {"name": "H100", "compute_capability": "9.0"}
        save_manifest(folder, manifest)
    elif case == "no gpu":
        def no_gpu(name=None, device=0):
            raise BuildError("CUDA call cudaSetDevice(0) failed: cudaErrorNoDevice")
        for module in (trt_cuda.__name__, "snnet_export.runtime.trt.runner"):
            monkeypatch.setattr(importlib.import_module(module), "get_backend", no_gpu)
    else:
        target = "jetson-orin"
    with pytest.warns(UserWarning, match="using ONNX Runtime, not the folder's TensorRT engines") as rec:
        sel = Selector(folder, resident="none", target=target)
    assert sel.backend == "ort" and any(why in str(w.message) for w in rec)
