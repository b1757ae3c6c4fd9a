"""Running TensorRT engines (runtime.trt.runner): other threads, refusing mismatched engines, real GPU.

The CPU tests run against the fakes of tests/trt_fakes.py; the test marked ``tensorrt``/``gpu`` builds
real engines from a small ONNX and compares them with onnxruntime (skipped without TensorRT and a GPU).
"""
from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
from engine_folder import make_engine_folder, onnxruntime_logits

import snnet_export.runtime.trt.cuda as trt_cuda
from snnet_export import deps
from snnet_export.engine_build import build_engines
from snnet_export.engine_folder.engine_records import find_record, parse_version
from snnet_export.errors import BuildError
from snnet_export.engine_folder.manifest import load_manifest
from trt_fakes import install_fake

@pytest.fixture()
def fake(monkeypatch):
    return install_fake(monkeypatch)


def test_engines_run_from_other_threads(tmp_path, fake):
    """Engines loaded on this thread run from 8 others: each run makes the device current on its thread."""
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    folder = make_engine_folder(tmp_path / "f")
    build_engines(folder, "dgpu", progress=False)
    x = np.random.default_rng(2).standard_normal((3, 3, 4, 4)).astype(np.float32)
    with SharedScratch(fake.backend) as scratch:
        engines = load_engines(folder, "dgpu", scratch=scratch)
        want = {i: e.run(x) for i, e in engines.items()}
        assert not fake.backend.is_current()  # nothing left current on the loading thread
        results: dict[int, list] = {}

        def worker(n: int) -> None:
            results[n] = [np.array_equal(engines[k].run(x), want[k]) for k in (n % 3, (n + 1) % 3)]

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == list(range(8)) and all(all(r) for r in results.values())


def test_runtime_refuses_mismatched_or_changed_engines(tmp_path, fake):
    from snnet_export.runtime.trt.runner import SharedScratch, TrtEngine, load_engines

    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    build_engines(folder, "dgpu", progress=False)
    rec = find_record(load_manifest(folder), "dgpu", 0)
    scratch = SharedScratch(fake.backend)
    path = folder / rec.file
    TrtEngine(path, record=rec.to_dict(), scratch=scratch)  # a dict record is accepted too
    with pytest.raises(BuildError, match="built by TensorRT 10.13.0.35 but this machine has TensorRT 10.3.0.30"):
        TrtEngine(path, record=replace(rec, tensorrt_version="10.13.0.35"), scratch=scratch)
    with pytest.raises(BuildError, match=r"built for compute capability 9.0 \(H100\)"):
        TrtEngine(path, record=replace(rec, gpu_name="H100", compute_capability="9.0"), scratch=scratch)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = "f" * 64  # a re-export with other weights
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match=r"engines \[0\] .* built from other weights"):
        load_engines(folder, "dgpu", scratch=scratch)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(BuildError, match="does not match its manifest record"):
        TrtEngine(path, record=rec, scratch=scratch)
    path.write_bytes(b"not an engine")
    with pytest.raises(BuildError, match="could not deserialize"):
        TrtEngine(path, scratch=scratch)


# ---- real TensorRT on a GPU ----------------------------------------------------------------------

def _gpu_available() -> bool:
    if not deps.is_tensorrt_available():
        return False
    try:
        trt_cuda.get_backend()
        return True
    except Exception:  # noqa: BLE001
        return False


requires_trt_gpu = pytest.mark.skipif(not _gpu_available(), reason="needs NVIDIA TensorRT, a CUDA GPU and cuda-python")


@pytest.mark.tensorrt
@pytest.mark.gpu
@requires_trt_gpu
@pytest.mark.parametrize("strip", [False, True])
def test_real_engines_match_onnxruntime(tmp_path, strip):
    from snnet_export.runtime.trt import tensorrt_version
    from snnet_export.runtime.trt.runner import SharedScratch, TrtEngine, load_engines

    precision = "fp16" if parse_version(tensorrt_version())[0] >= 11 else "fp32"
    folder = make_engine_folder(tmp_path / "real", precision=precision)
    result = build_engines(folder, "dgpu", strip_weights=strip, progress=False)
    assert len(result.built) == 3 and (folder / "trt" / "dgpu" / "timing.cache").is_file()
    assert build_engines(folder, "dgpu", strip_weights=strip).skipped == (0, 1, 2)
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    with SharedScratch() as scratch:
        engines = load_engines(folder, "dgpu", scratch=scratch)
        for cfg_id, engine in engines.items():
            ref = onnxruntime_logits(folder / f"stitch_{cfg_id:03d}.onnx", x)
            np.testing.assert_allclose(engine.run(x), ref, atol=2e-2, rtol=2e-2)
            assert engine.run(x[:1]).shape == (1, 10)
        assert scratch.size("activations") >= max(e.activation_bytes for e in engines.values())
        rec = find_record(load_manifest(folder), "dgpu", 0)
        with pytest.raises(BuildError, match="built by TensorRT 0.0.1"):
            TrtEngine(folder / rec.file, record=replace(rec, tensorrt_version="0.0.1"), scratch=scratch)
