"""Grad-CAM through captum."""

from __future__ import annotations

from typing import Literal

import torch
from captum.attr import LayerAttribution, LayerGradCam

from xaibench.modelstate import eval_mode, find_layer
from xaibench.plugins import Method
from xaibench.registry import METHODS


@METHODS.register("gradcam")
class GradCAM(Method):
    """Grad-CAM: gradient-weighted activations of a conv layer, upsampled to the image size.

    Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization", ICCV 2017; computed by captum's ``LayerGradCam``. Channel reduction: the
    gradient-weighted sum over the layer's channels, then ReLU (signed when ``relu`` is false).

    Args:
        layer: dotted module name to explain; default: the model's ``cam_layer`` (the last conv
            stage, e.g. ``net.layer4`` for ResNets), else its last Conv2d.
        relu: apply ReLU to the map (the paper's definition).
        interpolation: how the layer-resolution map is upsampled to H x W.
    """

    reduction = "gradient-weighted channel sum, then ReLU"

    def __init__(
        self,
        *,
        layer: str | None = None,
        relu: bool = True,
        interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    ) -> None:
        self.layer = layer
        self.relu = relu
        self.interpolation = interpolation

    @property
    def passes_per_image(self) -> int:
        return 1

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Grad-CAM maps [B, H, W] for images [B, 3, H, W]."""
        with eval_mode(model):
            cam = LayerGradCam(model, find_layer(model, self.layer)).attribute(
                images, target=targets, relu_attributions=self.relu)
        cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]),
                                           interpolate_mode=self.interpolation)
        return cam.sum(1).float()
