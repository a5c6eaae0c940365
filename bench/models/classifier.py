"""The pixel-space wrapper every model is explained in: normalisation first, then the network.

Its own module because it subclasses ``torch.nn.Module`` (importing it imports torch), while the
model configs of :mod:`xaibench.models.training` are checked before torch is imported.
"""

from __future__ import annotations

import torch
from torch import nn

from xaibench.models.normalisation import IMAGENET_MEAN, IMAGENET_STD


class Classifier(nn.Module):
    """Pixel-space classifier: normalisation, then a backbone.

    Args:
        net: the backbone, taking normalised images.
        cam_layer: dotted name (from this module) of the layer Grad-CAM explains by default.
        mean, std: per-channel normalisation applied to the [0, 1] input.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        cam_layer: str,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.net = net
        self.cam_layer = cam_layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] for images [B, 3, H, W] in [0, 1]."""
        return self.net((images - self.mean) / self.std)
