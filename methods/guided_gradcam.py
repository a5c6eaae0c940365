"""Guided Grad-CAM: captum's guided backpropagation times our Grad-CAM (CNNs and ViTs)."""

from __future__ import annotations

import warnings
from typing import Literal

import torch

from xaibench.methods.gradcam import layer_gradcam
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method


class GuidedGradCAM(Method):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

    Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization", ICCV 2017; computed as captum's ``GuidedGradCam`` does (checked against it in
    the tests): Grad-CAM with ReLU on ``layer`` (:func:`~xaibench.methods.gradcam.layer_gradcam`,
    so a vision transformer's token grid works too), upsampled to the image, times captum's
    guided backpropagation per channel (ReLU hooks removed after the call, also on error). A
    network without ``nn.ReLU`` modules (ViTs use GELU) has nothing to guide: the second factor
    is then the plain input gradient. Channel reduction: sum over channels of the absolute
    value. Cost: two forward+backward passes per image (one for each factor).

    Args:
        layer: dotted module name for the Grad-CAM factor; default: the model's ``cam_layer``
            (e.g. ``net.layer4`` for ResNets, set by joint models too), else its family's default
            (see :class:`~xaibench.methods.gradcam.GradCAM`).
        interpolation: how the Grad-CAM map is upsampled to H x W.
    """

    reduction = "sum over channels of the absolute value"
    passes_per_image = 2

    def __init__(
        self,
        *,
        layer: str | None = None,
        interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear",
    ) -> None:
        self.layer = layer
        self.interpolation = interpolation

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Guided Grad-CAM maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop
        from captum.attr import LayerAttribution

        cam = layer_gradcam(model, self.layer, images, targets, relu=True)
        with eval_mode(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            guided = CaptumGuidedBackprop(model).attribute(images.detach().requires_grad_(), target=targets)
        attr = guided.detach() * LayerAttribution.interpolate(cam, tuple(images.shape[-2:]),
                                                              interpolate_mode=self.interpolation)
        return attr.abs().sum(1).float()
