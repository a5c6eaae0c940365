"""Shared pieces of the metrics that re-explain (robustness and randomisation): noise drawn per
image from a seed, and many images explained and classified in a few batched calls."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method
from xaibench.seeding import image_generator, seeded_global_rng


def uniform_noise(images: torch.Tensor, n: int, low: float, high: float, seed: int) -> torch.Tensor:
    """``n`` draws of U(low, high) per pixel and channel for each image: [B, n, 3, H, W].

    Each image's draws come from its own generator (:func:`xaibench.seeding.image_generator`:
    ``seed`` and the image's contents), drawn on the CPU and moved to the images' device, so an
    image gets the same noise in any batch and on any device.

    Args:
        images: [B, 3, H, W].
        n: samples per image.
        low, high: the interval.
        seed: the seed.
    """
    draws = [torch.rand(n, *image.shape, generator=image_generator(seed, image)) for image in images]
    return (low + (high - low) * torch.stack(draws)).to(images.device, images.dtype)


def normal_noise(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` standard normal draws per pixel and channel for each image: [B, n, 3, H, W]; drawn
    per image as :func:`uniform_noise`.

    Args:
        images: [B, 3, H, W].
        n: samples per image.
        seed: the seed.
    """
    draws = [torch.randn(n, *image.shape, generator=image_generator(seed, image)) for image in images]
    return torch.stack(draws).to(images.device, images.dtype)


def explain(method: Method, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, *,
            batch_size: int, seed: int) -> torch.Tensor:
    """The method's maps of many images [N, 3, H, W] for targets [N]: [N, H, W] float32, in
    chunks of ``batch_size`` images, each under the global RNG seeded with ``seed`` (for library
    code that draws from it; the caller's state is restored)."""
    out = []
    for start in range(0, len(images), batch_size):
        with seeded_global_rng(seed, images.device):
            chunk = slice(start, start + batch_size)
            maps = method.attribute(model, images[chunk], targets[chunk])
        out.append(maps.detach().float())
    return torch.cat(out)


def predict(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    """The model's logits for many images [N, 3, H, W]: [N, classes], in chunks of ``batch_size``."""
    with torch.no_grad(), eval_mode(model):
        return torch.cat([model(images[start:start + batch_size])
                          for start in range(0, len(images), batch_size)])
