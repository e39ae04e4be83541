"""Shared fixtures: tiny synthetic data for fast algorithm tests, real Omniglot loaded once."""
from __future__ import annotations

import pytest
import torch
from blobs import blobs

from reptile_lib.tasks import ClassDataset

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tiny_data() -> ClassDataset:
    """12 classes x 8 images of 1x28x28 binary 'characters' (class-dependent blobs + noise)."""
    return blobs(12, 8, 0.05, 1234, "tiny", prefix="c")


@pytest.fixture(scope="session")
def omniglot():
    from reptile_lib.data import load_dataset
    return load_dataset("omniglot")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks (the theory chapters): one intra-op thread runs them several times faster than
    two (measured: 2.8 s against 21 s of CPU for the tiny sine Reptile run), so use one, then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def float64():
    """Compute in float64 where a test claims two computation paths are *equal*: in float32, another
    CPU picks other convolution kernels and a few SGD/Adam steps amplify their rounding (differences
    of 5e-5 were seen on one machine kind), so the verdict would depend on the machine. In float64
    the same rounding stays below 1e-12, and the tolerances below are far from it and from any real
    difference."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
