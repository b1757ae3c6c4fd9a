"""Shared fixtures: the tiny family (depth 12, widths 24/48/96, 32x32) keeps CPU tests fast."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# On a shared 2-core machine, busy-waiting OpenMP threads make each step 10-20x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def tiny_net():
    """A randomly initialised tiny SN-Net (shared, read-only: tests must not mutate it)."""
    import torch

    from snnet_export.model.snnet import snnet_from_family

    torch.set_num_threads(2)
    return snnet_from_family("tiny", seed=0)


@pytest.fixture()
def images():
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tests with one intra-op thread: on a shared 2-core machine, OpenMP threads
    spin-waiting against another process's threads made every step 10-20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
