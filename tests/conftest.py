"""Shared fixtures: tiny models and data made here, nothing downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): each worker, and the commands
    # its tests start, uses one intra-op thread, so two workers do not fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from xaibench.check.zoo import tiny_joint, tiny_net, tiny_resnet, tiny_vit
from xaibench.models.classifier import Classifier

__all__ = ["tiny_joint", "tiny_net", "tiny_resnet", "tiny_vit"]  # the package's tiny models


@pytest.fixture
def tiny_model() -> Classifier:
    return tiny_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test of tiny models on one intra-op thread (restored afterwards): their ops are too
    small to gain from threads, and on a busy machine idle-spinning threads cost most of the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
