"""The perturbations of MetaQuantus's tests (Hedström et al., TMLR 2023), seeded: multiplicative
Gaussian noise on a model's weights, and additive uniform noise on the input images, clipped to
the pixel range [0, 1]."""

from __future__ import annotations

import copy

import torch


def noisy_model(model: torch.nn.Module, sigma: float, seed: int) -> torch.nn.Module:
    """A copy of ``model`` whose every parameter is multiplied elementwise by noise drawn from
    N(1, sigma) (a ``torch.Generator`` seeded with ``seed``, on the CPU, so every device draws
    the same noise). The given model is not changed."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * sigma + 1.0
            p.mul_(noise.to(p.device, p.dtype))
    return out.eval()


def noisy_inputs(images: torch.Tensor, bound: float, seed: int) -> torch.Tensor:
    """``images`` [B,3,H,W] plus noise drawn uniformly from [-bound, bound] (seeded, drawn on the
    CPU), clipped to the pixel range [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    noise = (torch.rand(images.shape, generator=gen) * 2 - 1) * bound
    return (images + noise.to(images.device, images.dtype)).clamp(0.0, 1.0)
