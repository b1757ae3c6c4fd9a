"""The fake TensorRT version surfaces (tests/trt_fakes.py) against the real 10.13 bindings' stubs."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from trt_fakes import MISSING


# ---- the 10.13 surface is the real bindings' (from the installed stubs) -----------------------

# Every TensorRT name our builder and runtime touch, as "Class.member" of the real bindings.
USED = {
    "BuilderFlag": ["FP16", "STRIP_PLAN", "REFIT_IDENTICAL", "GPU_FALLBACK", "VERSION_COMPATIBLE"],
    "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
    "HardwareCompatibilityLevel": ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"],
    "ExecutionContextAllocationStrategy": ["USER_MANAGED"],
    "Builder": ["create_network", "create_builder_config", "create_optimization_profile",
                "build_serialized_network", "num_DLA_cores"],
    "IBuilderConfig": ["set_flag", "set_memory_pool_limit", "builder_optimization_level", "default_device_type",
                       "DLA_core", "hardware_compatibility_level", "create_timing_cache", "set_timing_cache",
                       "add_optimization_profile"],
    "ICudaEngine": ["device_memory_size", "device_memory_size_v2", "create_execution_context",
                    "create_execution_context_without_device_memory", "refittable", "num_io_tensors",
                    "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_profile_shape"],
    "IExecutionContext": ["set_device_memory", "device_memory", "execute_async_v3", "set_input_shape",
                          "set_tensor_address", "get_tensor_shape"],
    "Runtime": ["DLA_core", "engine_host_code_allowed", "deserialize_cuda_engine"],
    "Refitter": ["refit_cuda_engine", "get_missing_weights"],
    "OnnxParser": ["parse_from_file", "num_errors", "get_error"],
    "OnnxParserRefitter": ["refit_from_file", "num_errors", "get_error"],
}
FAKE_CLASS = {"ICudaEngine": "Engine", "IExecutionContext": "Context"}  # how MISSING names them


def _stub_members() -> dict[str, set[str]]:
    import ast

    path = Path(sys.prefix) / "trt-stubs" / "tensorrt_bindings" / "tensorrt.pyi"
    if not path.is_file():
        pytest.skip(f"no TensorRT stubs at {path} (make install puts them there)")
    members: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
            doc = ast.get_docstring(node) or ""  # write-only properties appear only as ":ivar name:"
            names.update(re.findall(r":ivar (\w+):", doc))
            members[node.name] = names
    return members


def test_surface_10_13_matches_the_stubs():
    """Everything our code touches exists in the 10.13 bindings, and the 10.13 fake hides nothing."""
    members = _stub_members()
    absent = [f"{cls}.{m}" for cls, names in USED.items() for m in names if m not in members.get(cls, set())]
    assert absent == []
    assert MISSING["10.13"] == set()


def test_older_and_newer_surfaces_only_hide_names_we_use():
    """Each version's MISSING names a member our code touches (a typo would hide nothing)."""
    used = {f"{FAKE_CLASS.get(cls, cls)}.{m}" for cls, names in USED.items() for m in names}
    for surface, names in MISSING.items():
        assert names <= used, (surface, names - used)
