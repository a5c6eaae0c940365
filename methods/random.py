"""Control: a seeded random map that ignores the model."""

from __future__ import annotations

import torch

from xaibench.plugins import Method
from xaibench.seeding import image_generator


class RandomMap(Method):
    """Random control: uniform noise in [0, 1) per pixel, seeded per image.

    The baseline every real explainer must beat (e.g. Hooker et al., "A benchmark for
    interpretability methods in deep neural networks", NeurIPS 2019, use it as the reference).
    Each image's map is drawn on CPU from a generator seeded with ``image_seed(seed, image)``
    (the seed and the image's exact contents), so an image gets the same map in any batch and on
    any device. Channel reduction: none (one value per pixel). Cost: no model passes.

    Args:
        seed: seeds the noise (together with each image's contents).
    """

    reduction = "none: one random value per pixel"
    uses_model = False
    passes_per_image = 0

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Random maps [B, H, W] for images [B, 3, H, W]; ``model`` and ``targets`` are unused."""
        h, w = images.shape[-2:]
        maps = [torch.rand(h, w, generator=image_generator(self.seed, image)) for image in images]
        return torch.stack(maps).to(images.device) if maps else images.new_zeros(0, h, w)
