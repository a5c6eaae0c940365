"""Input x gradient through captum."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method


class InputXGradient(Method):
    """Input x gradient: the pixel values times the gradient of the target logit.

    Shrikumar, Greenside, Shcherbina and Kundaje, "Not just a black box: learning important
    features through propagating activation differences", arXiv:1605.01713, 2016; computed by
    captum's ``InputXGradient`` on the [0, 1] pixels (normalisation is inside the model, so black
    pixels get zero attribution). Channel reduction: signed sum over channels. Cost: one
    forward+backward pass per image. No hyperparameters.
    """

    reduction = "signed sum over channels"

    def __init__(self) -> None:
        pass

    @property
    def passes_per_image(self) -> int:
        return 1

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Input x gradient maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import InputXGradient as CaptumInputXGradient

        with eval_mode(model):
            attr = CaptumInputXGradient(model).attribute(images.detach().requires_grad_(), target=targets)
        return attr.detach().sum(1).float()
