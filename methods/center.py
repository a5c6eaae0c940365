"""Control: a centred Gaussian blob, the same for every image."""

from __future__ import annotations

import torch

from xaibench.plugins import Method, check_range


def center_blob(height: int, width: int, sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """exp(-((y - cy)^2 / (2 (sigma H)^2) + (x - cx)^2 / (2 (sigma W)^2))) [H, W], with the centre
    (cy, cx) = ((H - 1) / 2, (W - 1) / 2) in pixel coordinates; 1 at the centre."""
    y = torch.arange(height, dtype=torch.float32, device=device) - (height - 1) / 2
    x = torch.arange(width, dtype=torch.float32, device=device) - (width - 1) / 2
    gy = torch.exp(-(y**2) / (2 * (sigma * height) ** 2))
    gx = torch.exp(-(x**2) / (2 * (sigma * width) ** 2))
    return gy[:, None] * gx[None, :]


class Center(Method):
    """Centre-bias control: a Gaussian blob in the middle of the image, ignoring image and model.

    Objects tend to sit near the image centre (Judd, Ehinger, Durand and Torralba, "Learning to
    predict where humans look", ICCV 2009, report a strong centre bias): an explainer should beat
    this prior. Channel reduction: none (one value per pixel). Cost: no model passes.

    Args:
        sigma: standard deviation as a fraction of the image side (per axis).
    """

    reduction = "none: one value per pixel"
    uses_model = False
    passes_per_image = 0

    def __init__(self, *, sigma: float = 0.25) -> None:
        check_range("sigma", sigma, low=1e-3)
        self.sigma = sigma

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Blob maps [B, H, W] for images [B, 3, H, W]; ``model`` and ``targets`` are unused."""
        b, _, h, w = images.shape
        return center_blob(h, w, self.sigma, images.device).expand(b, h, w).contiguous()
