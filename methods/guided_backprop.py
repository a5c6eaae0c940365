"""Guided backpropagation through captum."""

from __future__ import annotations

import warnings

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method


class GuidedBackprop(Method):
    """Guided backpropagation: the input gradient with negative gradients cut at every ReLU.

    Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for simplicity: the all
    convolutional net", ICLR workshop 2015; computed by captum's ``GuidedBackprop``, which hooks
    every ``nn.ReLU`` module during the call and removes the hooks afterwards (also on error).
    ReLUs applied functionally (``F.relu``) are not guided. Channel reduction: sum over channels of
    the absolute value. Cost: one forward+backward pass per image. No hyperparameters.
    """

    reduction = "sum over channels of the absolute value"
    requirement = ("a ReLU network (CNN): it changes the backward pass of nn.ReLU modules; a vision "
                   "transformer has GELUs, where it would be the plain gradient")
    families = ("cnn",)

    def __init__(self) -> None:
        pass

    @property
    def passes_per_image(self) -> int:
        return 1

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Guided-backprop maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        with eval_mode(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            grad = CaptumGuidedBackprop(model).attribute(images.detach().requires_grad_(), target=targets)
        return grad.detach().abs().sum(1).float()
