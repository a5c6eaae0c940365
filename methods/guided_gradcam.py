"""Guided Grad-CAM through captum."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from captum.attr import GuidedGradCam as CaptumGuidedGradCam

from xaibench.modelstate import eval_mode, find_layer
from xaibench.plugins import Method
from xaibench.registry import METHODS


@METHODS.register("guided_gradcam")
class GuidedGradCAM(Method):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

    Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization", ICCV 2017; computed by captum's ``GuidedGradCam`` (Grad-CAM with ReLU on
    ``layer``, upsampled to the image, times guided backpropagation per channel; ReLU hooks are
    removed after the call, also on error). Channel reduction: sum over channels of the absolute
    value. Cost: two forward+backward passes per image (one for each factor).

    Args:
        layer: dotted module name for the Grad-CAM factor; default: the model's ``cam_layer``
            (e.g. ``net.layer4`` for ResNets, set by joint models too), else its last Conv2d.
        interpolation: how the Grad-CAM map is upsampled to H x W.
    """

    reduction = "sum over channels of the absolute value"

    def __init__(
        self,
        *,
        layer: str | None = None,
        interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear",
    ) -> None:
        self.layer = layer
        self.interpolation = interpolation

    @property
    def passes_per_image(self) -> int:
        return 2

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Guided Grad-CAM maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        with eval_mode(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            attr = CaptumGuidedGradCam(model, find_layer(model, self.layer)).attribute(
                images.detach().requires_grad_(), target=targets, interpolate_mode=self.interpolation)
        return attr.detach().abs().sum(1).float()
