"""Control: the Sobel edge magnitude of the image, no model."""

from __future__ import annotations

import torch

from xaibench.plugins import Method

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude sqrt(gx^2 + gy^2), summed over channels: [B, H, W].

    The image is padded by replicating its border, so a flat border has no edge.
    """
    kx = torch.tensor(SOBEL_X, dtype=images.dtype, device=images.device)
    kernels = torch.stack([kx, kx.t()])[:, None]  # [2, 1, 3, 3]: d/dx, d/dy
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    grad = torch.nn.functional.conv2d(padded, kernels)  # [B*C, 2, H, W]
    return grad.pow(2).sum(1).sqrt().reshape(b, c, h, w).sum(1)


class Sobel(Method):
    """Edge control: the Sobel gradient magnitude of the input image, ignoring the model.

    Sobel and Feldman's 3x3 operator ("A 3x3 isotropic gradient operator for image processing",
    1968); an edge detector as a model-independent baseline follows Adebayo et al., "Sanity
    checks for saliency maps", NeurIPS 2018. Channel reduction: sum over channels of each
    channel's edge magnitude. Cost: no model passes. No hyperparameters.
    """

    reduction = "sum over channels of the per-channel edge magnitude"
    uses_model = False
    passes_per_image = 0

    def __init__(self) -> None:
        pass

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Edge maps [B, H, W] for images [B, 3, H, W]; ``model`` and ``targets`` are unused."""
        return sobel_magnitude(images.detach().float())
