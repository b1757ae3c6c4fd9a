"""Distributed training helpers: the process group ``torchrun`` describes, and gradient sync.

Ranks of an SN-Net run each sample their own configuration, so they run different sub-networks.
Instead of DDP's hooks, :func:`sync_gradients` all-reduces by hand after each backward pass: every
parameter's gradient is summed over ranks (a rank that did not use it contributes zeros) and divided
by the world size, the same average DDP with ``find_unused_parameters=True`` computes; a parameter
no rank used keeps ``grad=None`` and is not updated (no weight decay or momentum step either).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_torch_device(device: str | None) -> str | None:
    """Refuse a ``--device`` this machine does not have, as one line (``None`` passes through).

    Accepts ``cpu``, ``cuda``/``cuda:N`` (N below the visible GPU count) and ``mps`` when present.
    """
    from ..errors import DeviceError

    if device is None:
        return None
    import torch

    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu"
    if text == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device '{device}': CUDA is not available on this machine; use --device cpu")
        if index and int(index) >= count:
            raise DeviceError(f"device '{device}': this machine has {count} CUDA device(s), cuda:0-cuda:{count - 1}")
        return text
    raise DeviceError(f"device '{str(device)[:40]}' is not one of cpu, cuda, cuda:N (or mps on Apple)")


@contextlib.contextmanager
def distributed(device: str | None = None) -> Iterator[DistContext]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), or run alone.

    NCCL with one GPU per rank (``LOCAL_RANK``) when CUDA is available and ``device`` is not
    ``cpu``; gloo otherwise. A group this call created is destroyed on exit.
    """
    import torch
    import torch.distributed as dist

    device = check_torch_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if world <= 1:
        yield DistContext(device=device or ("cuda" if cuda else "cpu"))
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    try:
        yield DistContext(rank=dist.get_rank(), world=dist.get_world_size(), device=f"cuda:{local}" if cuda else "cpu")
    finally:
        if created:
            dist.destroy_process_group()


def sync_gradients(params: Sequence["torch.nn.Parameter"], world: int, bucket: int = 1 << 24) -> None:
    """Average gradients over ranks; a missing gradient counts as zeros, and a parameter no rank
    used is left with ``grad=None`` (see the module docstring)."""
    import torch
    import torch.distributed as dist

    if world <= 1:
        return
    dev = params[0].device
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    dist.all_reduce(used)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    start = 0
    while start < len(params):
        stop, size = start, 0
        while stop < len(params) and (size == 0 or size + grads[stop].numel() <= bucket):
            size += grads[stop].numel()
            stop += 1
        flat = torch.cat([g.reshape(-1) for g in grads[start:stop]])  # [size]
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for p, g in zip(params[start:stop], grads[start:stop]):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()
        start = stop
    for p, u in zip(params, used.tolist()):
        if u == 0:
            p.grad = None


def state_digest(module: "torch.nn.Module") -> str:
    """SHA-256 of a module's state dict (keys, shapes and bytes), to compare ranks or runs."""
    import torch

    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(snnet: Any, ctx: DistContext) -> list[str]:
    digest = state_digest(snnet)
    if ctx.world <= 1:
        return [digest]
    import torch.distributed as dist

    digests: list[Any] = [None] * ctx.world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended with different weights ({digests}): gradient sync is broken")
    return digests


def broadcast_state(snnet: Any, ctx: DistContext) -> None:
    if ctx.world > 1:
        import torch.distributed as dist

        for t in snnet.state_dict().values():
            dist.broadcast(t, src=0)


def reduce_batchnorm_stats(snnet: Any, ctx: DistContext) -> None:
    """Average BatchNorm running statistics over ranks (timm's ``--dist-bn reduce``, as the
    official ResNet SN-Nets train): gradients are synced, but each rank's BatchNorms saw its own
    batches, so without this the ranks' buffers drift apart (CNN and LeViT families)."""
    if ctx.world <= 1:
        return
    import torch
    import torch.distributed as dist

    for m in snnet.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats:
            for t in (m.running_mean, m.running_var):
                if t is not None:
                    dist.all_reduce(t, op=dist.ReduceOp.SUM)
                    t.div_(ctx.world)
            if m.num_batches_tracked is not None:  # ranks draw different configs: keep the largest count
                dist.all_reduce(m.num_batches_tracked, op=dist.ReduceOp.MAX)


def barrier(ctx: DistContext) -> None:
    if ctx.world > 1:
        import torch.distributed as dist

        dist.barrier()
