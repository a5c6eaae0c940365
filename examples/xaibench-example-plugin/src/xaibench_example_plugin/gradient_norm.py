"""The example explainer: the norm of the input gradient."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range


class GradientNorm(Method):
    """Gradient norm: the L2 norm over channels of the target logit's input gradient.

    A gradient saliency in the spirit of Simonyan, Vedaldi and Zisserman (ICLR workshop 2014),
    kept tiny to show the plugin contract: keyword-only hyperparameters with type hints and
    range checks, ``reduction``, ``passes_per_image``, the model touched only inside
    ``eval_mode`` and gradients taken with ``torch.autograd.grad`` (parameters' ``.grad`` stay
    None).

    Args:
        power: the map is the gradient norm raised to this power.
    """

    reduction = "L2 norm over channels"
    passes_per_image = 1  # one forward and backward pass per image (costs.csv)

    def __init__(self, *, power: float = 1.0) -> None:
        check_range("power", power, low=0.0)
        self.power = power

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        x = images.detach().requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            logits = model(x)
            (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
        return grad.norm(dim=1).pow(self.power).float()
