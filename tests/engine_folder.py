"""A tiny fake engine folder for build/runtime tests: stitch ONNX files sharing one weight file.

Each stitch is ``input [batch, 3, 4, 4] -> Flatten -> Gemm -> logits [batch, 10]`` (FP16 exports
cast in and out), its weights stored as ONNX external data in ``weights.<precision>.bin``, plus a
``manifest.json`` in the exporter's schema. Independent of the real exporter.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

CHW = (3, 4, 4)
CLASSES = 10
ALIGN = 64


def _external(name: str, arr: np.ndarray, location: str, offset: int):
    import onnx

    t = onnx.TensorProto()
    t.name = name
    t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.dims.extend(arr.shape)
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(arr.nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _graph(cfg_id: int, w, b, precision: str, opset: int):
    from onnx import TensorProto, helper

    feat = int(np.prod(CHW))
    nodes, x = [], "input"
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    out = "logits" if precision == "fp32" else "y16"
    nodes.append(helper.make_node("Gemm", ["flat", w.name, b.name], [out]))
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", ["y16"], ["logits"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes, f"stitch_{cfg_id:03d}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *CHW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[w, b])
    assert feat == w.dims[0]
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def make_engine_folder(folder: Path, ids=(0, 1, 2), precision: str = "fp32", opset: int = 18,
                       batch_max: int = 16, seed: int = 0) -> Path:
    """Write ``stitch_NNN.onnx`` for ``ids``, the shared weight file and ``manifest.json``."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    dtype = np.float16 if precision == "fp16" else np.float32
    weights_name = f"weights.{precision}.bin"
    rng = np.random.default_rng(seed)
    blob = bytearray()
    configs, records = [], []
    for cfg_id in ids:
        arrays = {"W": rng.standard_normal((int(np.prod(CHW)), CLASSES)).astype(dtype) * 0.1,
                  "B": rng.standard_normal(CLASSES).astype(dtype) * 0.1}
        tensors, inits = {}, []
        for key, arr in arrays.items():
            blob.extend(b"\0" * (-len(blob) % ALIGN))
            data = np.ascontiguousarray(arr).tobytes()
            tensors[key] = _external(f"{key}{cfg_id}", np.ascontiguousarray(arr), weights_name, len(blob))
            records.append({"offset": len(blob), "length": len(data), "dtype": np.dtype(dtype).name,
                            "shape": list(arr.shape), "sha256": hashlib.sha256(data).hexdigest()})
            inits.append([f"{key}{cfg_id}", len(records) - 1])
            blob.extend(data)
        model = _graph(cfg_id, tensors["W"], tensors["B"], precision, opset)
        name = f"stitch_{cfg_id:03d}.onnx"
        onnx.save(model, str(folder / name))
        configs.append({
            "id": cfg_id, "path": f"A[0..{cfg_id}]", "front": "A", "end": "A", "position": None,
            "stitch_layer": None, "flops": 960, "params": 490, "accuracy": None, "onnx": name,
            "onnx_sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "inputs": [{"name": "input", "shape": ["batch", *CHW], "dtype": "float32"}],
            "outputs": [{"name": "logits", "shape": ["batch", CLASSES], "dtype": "float32"}],
            "verified": None, "initializers": inits,
        })
    (folder / weights_name).write_bytes(bytes(blob))
    manifest = {
        "schema": "snnet-export/manifest", "schema_version": 1, "snnet_export_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z", "family": {"name": "fake"}, "precision": precision, "opset": opset,
        "batch_max": batch_max, "io_dtype": "float32", "input_shape": list(CHW), "num_classes": CLASSES,
        "checkpoint": {"path": "random", "seed": seed},
        "weights": {"file": weights_name, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                    "alignment": ALIGN, "tensors": records},
        "configs": configs,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def onnxruntime_logits(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def write_profile(folder: Path, speed: dict, batches=(1,), gain=lambda b: b, tails=(1.1, 1.3)) -> dict:
    """A synthetic ORT profile for selector tests (selection logic only; never shown as a measurement).

    Stitch ``i`` runs ``speed[i] * gain(b)`` images/s at batch ``b``; p50 (and mean) latency follows
    from that, p90 and p99 are p50 times ``tails``.
    """
    from snnet_export.engine_folder.profile import PROFILE_SCHEMA, device_name, profile_path

    stitches = []
    for i, s in speed.items():
        for b in batches:
            t = s * gain(b)
            lat = 1000.0 * b / t
            stitches.append({"id": i, "batch": b, "throughput": t, "runs": 10,
                             "latency_ms": {"mean": lat, "p50": lat, "p90": lat * tails[0], "p99": lat * tails[1]}})
    prof = {"schema": PROFILE_SCHEMA, "version": 1, "device": device_name("ort"), "backend": "ort",
            "precision": "fp32", "environment": {}, "batches": list(batches), "stitches": stitches}
    profile_path(folder, device_name("ort"), "ort").write_text(json.dumps(prof))
    return prof
