"""tools/patch_trt_stubs.py: the tensorrt-stubs 10.13 fixes are right, idempotent and keep CRLF."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("patch_trt_stubs", ROOT / "tools" / "patch_trt_stubs.py")
patch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(patch)

BROKEN = (
    "class INetworkDefinition:\r\n"
    "    def add_scale_nd(self, input: ITensor, mode: ScaleMode, shift: Weights = None, scale: Weights = None, "
    "power: Weights = None, channel_axis: int) -> IScaleLayer:\r\n"
    '        """\r\n'
    "            :arg in: The input tensors. def f(in: int) stays in docstrings.\r\n"
    '        """\r\n'
    "    def get_workspace_size(self, in: list[PluginTensorDesc], out: list[PluginTensorDesc]) -> int:\r\n"
    "        ...\r\n"
    "    def f(self, a: int = 1, *, b: int) -> None:\r\n"
    "        ...\r\n"
    "    def g(self, index: int, inside: dict[str, int] = {}, *args: int, **kw: int) -> None:\r\n"
    "        ...\r\n"
)


def test_patch_fixes_keywords_and_defaults():
    fixed = patch.patch_text(BROKEN)
    ast.parse(fixed.replace("\r\n", "\n"))
    assert "power: Weights = None, channel_axis: int = ...) -> IScaleLayer:\r\n" in fixed
    assert "def get_workspace_size(self, in_: list[PluginTensorDesc], out: list[PluginTensorDesc])" in fixed
    assert ":arg in: The input tensors. def f(in: int) stays in docstrings." in fixed
    assert "def f(self, a: int = 1, *, b: int) -> None:" in fixed  # keyword-only needs no default
    assert "inside: dict[str, int] = {}, *args: int, **kw: int" in fixed
    assert fixed.count("\r\n") == BROKEN.count("\r\n")
    assert patch.patch_text(fixed) == fixed


def test_patch_dir_is_idempotent(tmp_path):
    pkg = tmp_path / "tensorrt_bindings"
    pkg.mkdir()
    (pkg / "tensorrt.pyi").write_bytes(BROKEN.encode())
    assert patch.main([str(tmp_path)]) == 0
    once = (pkg / "tensorrt.pyi").read_bytes()
    assert b"in_:" in once and b"\r\n" in once
    assert patch.patch_dir(tmp_path) == ([], [])
    assert (pkg / "tensorrt.pyi").read_bytes() == once
    assert patch.main([str(tmp_path / "missing")]) == 1
