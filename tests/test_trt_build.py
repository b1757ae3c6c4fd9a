"""Building TensorRT engines (engine_build.trt_builder via build_engines) on each version surface.

Against the fakes of tests/trt_fakes.py (CPU): builder flags, network creation flags, profiles, DLA
and hardware-compatibility settings, the timing cache, and what each TensorRT version refuses.
"""
from __future__ import annotations


import numpy as np
import pytest
from engine_folder import make_engine_folder, onnxruntime_logits

from snnet_export.engine_build import build_engines
from snnet_export.errors import BuildError
from trt_fakes import VERSIONS, called, install_fake

@pytest.fixture()
def fake(monkeypatch):
    return install_fake(monkeypatch)


@pytest.mark.parametrize("surface, precision, builder_flags, network_flags", [
    ("10.0", "fp32", ["FP16"], 1),            # weakly typed + FP16; EXPLICIT_BATCH (bit 0) still in the enum
    ("10.3", "fp32", ["FP16"], 1),
    ("10.13", "fp16", [], 1 | 2),             # FP16 export: STRONGLY_TYPED (bit 1), no FP16 builder flag
    ("11", "fp16", [], 0),                    # always strongly typed; neither creation flag exists
])
@pytest.mark.parametrize("strip", [False, True])
def test_build_then_run_on_every_version_surface(tmp_path, monkeypatch, surface, precision, builder_flags,
                                                 network_flags, strip):
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    fake = install_fake(monkeypatch, VERSIONS[surface])
    folder = make_engine_folder(tmp_path / "f", precision=precision)
    result = build_engines(folder, "dgpu", strip_weights=strip, progress=False)
    assert len(result.built) == 3
    config = called(fake.trt, "build")[0]
    assert called(fake.trt, "create_network") == [network_flags] * 3
    assert config.flags == builder_flags + (["STRIP_PLAN", "REFIT_IDENTICAL"] if strip else [])
    assert config.pools == {"WORKSPACE": 4096 << 20} and config.builder_optimization_level == 3
    assert config.profiles[0].shapes == ("input", (1, 3, 4, 4), (8, 3, 4, 4), (16, 3, 4, 4))
    assert (folder / "trt" / "dgpu" / "timing.cache").read_bytes() == b"+++"  # one cache, saved per stitch
    assert len({id(c.cache) for c in called(fake.trt, "build")}) == 1

    x = np.random.default_rng(1).standard_normal((5, 3, 4, 4)).astype(np.float32)
    scratch = SharedScratch(fake.backend)
    engines = load_engines(folder, "dgpu", scratch=scratch)
    assert called(fake.trt, "refit") == ([f"stitch_{i:03d}.onnx" for i in range(3)] if strip else [])
    assert len({id(logger) for logger in called(fake.trt, "logger")}) == 1  # one ILogger per process
    for cfg_id, engine in engines.items():
        np.testing.assert_allclose(engine.run(x), onnxruntime_logits(folder / f"stitch_{cfg_id:03d}.onnx", x),
                                   rtol=2e-3 if precision == "fp16" else 1e-5, atol=2e-3 if precision == "fp16" else 1e-5)
    assert scratch.size("activations") == 1024  # 1000 rounded up to 256 bytes, shared by all three
    assert scratch.size("input") == 16 * 48 * 4 and scratch.size("output") == 768  # 640 rounded up
    with pytest.raises(ValueError, match=r"batch 1..16, got shape \[17, 3, 4, 4\]"):
        engines[0].run(np.zeros((17, 3, 4, 4), np.float32))
    scratch.close()
    assert fake.backend.mem == {}


def test_tensorrt11_refuses_fp32_exports_before_building(tmp_path, monkeypatch):
    fake = install_fake(monkeypatch, VERSIONS["11"])
    with pytest.raises(BuildError, match="--precision fp16"):
        build_engines(make_engine_folder(tmp_path / "f32", ids=(0,)), "dgpu")
    assert called(fake.trt, "build") == []


def test_dla_and_compatibility_settings(tmp_path, fake):
    from snnet_export.runtime.trt.runner import SharedScratch, load_engines

    prof = tmp_path / "orin-dla.yaml"
    prof.write_text("platform: jetson\nmin_tensorrt: '10.3'\nbatch: {min: 2, opt: 2, max: 2}\n"
                    "dla: {core: 1, gpu_fallback: true}\nworkspace_mib: null\nversion_compatible: true\n")
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    build_engines(folder, prof, progress=False)
    config = called(fake.trt, "build")[0]
    assert (config.default_device_type, config.DLA_core) == ("DLA", 1)
    assert config.flags == ["FP16", "GPU_FALLBACK", "VERSION_COMPATIBLE"] and config.pools == {}
    with SharedScratch(fake.backend) as scratch:
        load_engines(folder, "orin-dla", scratch=scratch)
    # the runtime is told the engine's DLA core before it deserializes (else DLA layers load on core 0)
    assert [c for c in fake.trt.calls if c[0] in ("runtime.DLA_core", "deserialize")] == [
        ("runtime.DLA_core", 1), ("deserialize", 1)]
    prof.write_text(prof.read_text().replace("core: 1", "core: 2"))
    with pytest.raises(BuildError, match="asks for DLA core 2 but this device has 2 DLA core"):
        build_engines(folder, prof, force=True)
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware_compatibility: same-compute-capability\n")
    with pytest.raises(BuildError, match="no same-compute-capability hardware compatibility"):
        build_engines(folder, hw)


def test_same_compute_capability_needs_a_tensorrt_that_has_it(tmp_path, monkeypatch):
    fake = install_fake(monkeypatch, VERSIONS["10.13"])
    hw = tmp_path / "hw.yaml"
    hw.write_text("hardware_compatibility: same-compute-capability\n")
    build_engines(make_engine_folder(tmp_path / "f", ids=(0,)), hw, progress=False)
    assert called(fake.trt, "build")[0].hardware_compatibility_level == "same-cc"


def test_more_dla_engines_than_a_core_holds_are_refused(tmp_path, fake):
    from snnet_export.runtime.trt.runner import DLA_LOADABLES_PER_CORE, SharedScratch, load_engines

    prof = tmp_path / "dla.yaml"
    prof.write_text("platform: jetson\nbatch: {min: 2, opt: 2, max: 2}\ndla: {core: 0, gpu_fallback: true}\n")
    folder = make_engine_folder(tmp_path / "f", ids=tuple(range(DLA_LOADABLES_PER_CORE + 1)))
    build_engines(folder, prof, progress=False)
    with SharedScratch(fake.backend) as scratch:
        with pytest.raises(BuildError, match="17 engines of target dla run on DLA core 0, but a DLA core holds "
                                             "at most 16 loadables"):
            load_engines(folder, "dla", scratch=scratch)
        assert called(fake.trt, "deserialize") == []  # refused before loading any
        assert len(load_engines(folder, "dla", ids=list(range(16)), scratch=scratch)) == 16


def test_bad_timing_cache_is_replaced(tmp_path, fake):
    folder = make_engine_folder(tmp_path / "f", ids=(0,))
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"mismatch")
    build_engines(folder, "dgpu", timing_cache=cache, progress=False)
    assert cache.read_bytes() == b"+"
