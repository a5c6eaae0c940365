"""Gradient saliency (vanilla gradient) through captum."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method


class Saliency(Method):
    """Saliency map: the absolute gradient of the target logit with respect to the pixels.

    Simonyan, Vedaldi and Zisserman, "Deep inside convolutional networks: visualising image
    classification models and saliency maps", ICLR workshop 2014; computed by captum's
    ``Saliency``. Channel reduction: maximum over channels of the absolute gradient (as in the
    paper). Cost: one forward+backward pass per image. No hyperparameters.
    """

    reduction = "max over channels of the absolute gradient"

    def __init__(self) -> None:
        pass

    @property
    def passes_per_image(self) -> int:
        return 1

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Saliency maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import Saliency as CaptumSaliency

        with eval_mode(model):
            grad = CaptumSaliency(model).attribute(images.detach().requires_grad_(), target=targets, abs=True)
        return grad.detach().amax(1).float()
