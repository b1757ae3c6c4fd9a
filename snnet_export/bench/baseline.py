"""The optional PyTorch eager baseline ``bench --baseline torch`` times next to the backend.

Imports torch (and the model package) only inside :func:`torch_baseline`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

Runner = Callable[[np.ndarray], Any]


def torch_baseline(manifest: Mapping[str, Any], threads: int,
                   cuda: bool = False) -> tuple[Callable[[int], Runner], dict[str, Any]]:
    """PyTorch eager runner factory for the manifest's family and weights, and its environment.

    The SNNet is built from ``manifest["family"]`` with the exported checkpoint, or with random
    weights of the recorded seed (speed does not depend on the values).
    """
    import torch

    from ..model.family import family_from_dict
    from ..model.snnet import load_checkpoint, snnet_from_family

    torch.set_num_threads(threads)
    ckpt = manifest.get("checkpoint") or {"path": "random", "seed": 0}
    net = snnet_from_family(family_from_dict(manifest["family"]), seed=ckpt.get("seed", 0))
    if ckpt.get("path", "random") != "random":
        load_checkpoint(net, ckpt["path"])
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda and manifest.get("precision") == "fp16" else torch.float32
    net = net.to(device, dtype).eval()

    def runner(cfg_id: int) -> Runner:
        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                y = net(torch.from_numpy(x).to(device, dtype), cfg_id)
                if cuda:
                    torch.cuda.synchronize()
            return y
        return run

    env = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "torch_device": str(device), "torch_dtype": str(dtype).replace("torch.", ""),
           "torch_weights": f"random (seed {ckpt.get('seed', 0)})" if ckpt.get("path", "random") == "random"
           else ckpt["path"]}
    return runner, env
