"""Deterministic CUDA kernels for a run: the same run on the same GPU gives the same numbers.

On the CPU torch's kernels are deterministic already. On CUDA several are not by default: cuDNN
picks (and may autotune) algorithms that add with atomics, cuBLAS splits sums by a workspace
that varies, and some backward kernels (adaptive pooling, upsampling, index_add, ...) add floats
in whatever order the threads arrive. Two runs of the same benchmark then train slightly different
models and the leaderboard differs (measured on an H200: 117 of 322 metric means identical
between two runs of the default benchmark).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# What the cache key of a CUDA cell records about its kernels (plan.py imports this without torch,
# so that this module is part of the executor's code hash and a change of policy changes the keys).
CUDA_KERNELS = "deterministic"


@contextmanager
def deterministic_cuda(device: str | torch.device) -> Iterator[None]:
    """For the block, on a CUDA ``device``: cuDNN's deterministic algorithms without autotuning
    and ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op that has no
    deterministic CUDA kernel warns, naming itself, and runs); cuBLAS gets a fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG``, unless set already; it applies to cuBLAS handles created
    afterwards). Torch's settings are restored on exit. On the CPU: nothing to do."""
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[:2]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])
