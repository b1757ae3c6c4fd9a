"""Can a PyTriton 0.7 model give clients a per-item scalar output (``[batch]``)? (docs/serve.md)

    .venv/bin/python tools/serve_stitch_shape.py scalar|flat1|reshape|reshape_flat

``scalar``: ``Tensor(shape=())``; ``flat1``: ``dims [1]``, the function returns ``[batch]``;
``reshape``: ``dims [1]`` plus ``reshape: {shape: []}`` patched into PyTriton's generated config,
returning ``[batch, 1]``; ``reshape_flat``: the same config, returning ``[batch]``. Prints whether
Triton loads the toy model and what the HTTP and gRPC clients receive (loopback ports).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_helpers import free_ports  # noqa: E402  (the tests' loopback port picker)


def _patch_reshape() -> None:
    from pytriton.model_config import generator

    original = generator.ModelConfigGenerator.get_config

    def get_config(self):  # type: ignore[no-untyped-def]
        cfg = original(self)
        for out in cfg.get("output", []):
            if out["name"] == "stitch":
                out["reshape"] = {"shape": []}
        return cfg

    generator.ModelConfigGenerator.get_config = get_config


def main(mode: str) -> None:
    from snnet_export.serve.options import prepare_environment

    prepare_environment()
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    if mode.startswith("reshape"):
        _patch_reshape()
    flat = mode in ("scalar", "flat1", "reshape_flat")

    def infer(requests):  # type: ignore[no-untyped-def]
        out = []
        for r in requests:
            n = r.data["input"].shape[0]
            out.append({"y": r.data["input"] * 2, "stitch": np.full((n,) if flat else (n, 1), 7, np.int32)})
        return out

    h, g, m = free_ports(3)
    triton = Triton(config=TritonConfig(http_address="127.0.0.1", http_port=h, grpc_address="127.0.0.1",
                                        grpc_port=g, metrics_address="127.0.0.1", metrics_port=m,
                                        allow_gpu_metrics=False, exit_timeout_secs=5))
    try:
        triton.bind(model_name="m", infer_func=infer, inputs=[Tensor(name="input", dtype=np.float32, shape=(2,))],
                    outputs=[Tensor(name="y", dtype=np.float32, shape=(2,)),
                             Tensor(name="stitch", dtype=np.int32, shape=() if mode == "scalar" else (1,))],
                    config=ModelConfig(batching=True, max_batch_size=8), strict=False)
        triton.run()
    except Exception as exc:  # noqa: BLE001 - the finding
        print(mode, "model did not load:", str(exc)[:300])
        triton.stop()
        return
    x = np.ones((3, 2), np.float32)
    for name, mod, url in (("http", httpclient, f"127.0.0.1:{h}"), ("grpc", grpcclient, f"127.0.0.1:{g}")):
        client = mod.InferenceServerClient(url)
        inp = mod.InferInput("input", [3, 2], "FP32")
        inp.set_data_from_numpy(x)
        res = client.infer("m", [inp])
        print(mode, name, "stitch", res.as_numpy("stitch").shape, "y", res.as_numpy("y").shape)
        if name == "http":
            print(mode, "metadata outputs", client.get_model_metadata("m")["outputs"])
        client.close()
    triton.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scalar")
