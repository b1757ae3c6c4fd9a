"""TensorRT ONNX-parser support table for the ops snnet-export's exports use (data for :mod:`.check`).

Data, not code: a Python module rather than a YAML file so that it ships in the wheel beside the
code that reads it. Facts, each with its source:

  onnx/onnx-tensorrt docs/operators.md, branch 10.0-GA (commit 73f629e04a68): "TensorRT 10.0 supports
    operators in the inclusive range of opset 9 to opset 20"; every op in ``OPS`` below is "Y" there,
    except DeformConv (absent) and Unique (listed "N").
  onnx/onnx-tensorrt docs/operators.md, branch 10.1-GA (commit 96e781103cfc): DeformConv "Y"; the
    opset header still reads 9..20.
  onnx/onnx-tensorrt docs/Changelog.md (10.15 era): 10.1 added DeformConv; 10.2-10.5 add no opset
    (Slice/Pad tensor axes, window ops, STFT); 10.6 moved the ONNX submodule to 1.17; 10.9 opset-21
    GroupNorm; 10.11 ONNX 1.18; 10.14 added Attention; 10.15 RotaryEmbedding, RMSNormalization.
  onnx/onnx-tensorrt docs/operators.md at 10.15: "opset 9 to opset 24".
  NVIDIA TensorRT "ONNX Opset Guide" (docs.nvidia.com, 11.x): maximum opset 25.

``opset_max`` for 10.3 and 10.13 is NOT read from those releases' own operators.md (not available
here): 10.3 keeps the last documented value (20; no changelog entry between 10.1 and 10.5 raises
it); 10.13 is set to 22 (ONNX 1.17's opset, submodule since 10.6), a conservative lower bound of
10.15's documented 24. Correct them when those files are read.
"""
from __future__ import annotations

SOURCE = 'onnx/onnx-tensorrt docs/operators.md (10.0-GA, 10.1-GA, 10.15) and docs/Changelog.md; NVIDIA ONNX Opset Guide (11.x)'

# a TensorRT version uses the newest row at or below it; "documented": read from that release's operators.md
VERSIONS: dict[str, dict[str, object]] = {
    '10.0': {'opset_min': 9, 'opset_max': 20, 'documented': True},
    '10.3': {'opset_min': 9, 'opset_max': 20, 'documented': False},
    '10.13': {'opset_min': 9, 'opset_max': 22, 'documented': False},
    '10.15': {'opset_min': 9, 'opset_max': 24, 'documented': True},
    '11.0': {'opset_min': 9, 'opset_max': 25, 'documented': True},
}

# ONNX op (default domain) -> first TensorRT version whose parser imports it
OPS: dict[str, str] = {
    'Add': '10.0', 'Cast': '10.0', 'Concat': '10.0', 'Constant': '10.0', 'ConstantOfShape': '10.0',
    'Conv': '10.0', 'Div': '10.0', 'Einsum': '10.0', 'Equal': '10.0', 'Erf': '10.0', 'Expand': '10.0',
    'Flatten': '10.0', 'Gather': '10.0', 'Gelu': '10.0', 'Gemm': '10.0', 'Identity': '10.0',
    'LayerNormalization': '10.0', 'MatMul': '10.0', 'Mul': '10.0', 'Neg': '10.0', 'Pow': '10.0',
    'Range': '10.0', 'ReduceMean': '10.0', 'Relu': '10.0', 'Reshape': '10.0', 'Shape': '10.0',
    'Sigmoid': '10.0', 'Slice': '10.0', 'Softmax': '10.0', 'Split': '10.0', 'Sqrt': '10.0', 'Squeeze': '10.0',
    'Sub': '10.0', 'Tanh': '10.0', 'Tile': '10.0', 'Transpose': '10.0', 'Unsqueeze': '10.0', 'Where': '10.0',
    'DeformConv': '10.1', 'Attention': '10.14', 'RMSNormalization': '10.15',
}

UNSUPPORTED = ('Unique',)  # listed "N" in every version read

# DLA (Jetson Orin): ONNX ops whose TensorRT layers the DLA can run (FP16/INT8), from our reading of the
# developer guide's DLA section, not re-checked per version. Everything else needs GPU fallback.
DLA_OPS = ('Add', 'Concat', 'Conv', 'Div', 'Mul', 'Relu', 'Sigmoid', 'Tanh', 'Softmax', 'Sub', 'Transpose', 'Reshape', 'Flatten', 'Gemm', 'Slice', 'ReduceMean')
