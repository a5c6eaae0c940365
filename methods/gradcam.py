"""Grad-CAM on any layer: a conv stage of a CNN, or the token grid of a vision transformer."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.methods.layers import default_cam_layer, to_grid, token_grid
from xaibench.models.modelstate import eval_mode, find_layer
from xaibench.plugins import Method


def gradcam_map(activations: torch.Tensor, gradients: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """Grad-CAM from a layer's activations and target gradients, both [B, C, h, w]: the channel
    weights are the spatial means of the gradients; the map [B, 1, h, w] is the weighted channel
    sum, then ReLU when ``relu`` (captum's ``LayerGradCam``)."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activations).sum(1, keepdim=True)
    return cam.clamp(min=0) if relu else cam


def layer_gradcam(
    model: torch.nn.Module, layer: str | None, images: torch.Tensor, targets: torch.Tensor, *, relu: bool
) -> torch.Tensor:
    """Grad-CAM [B, 1, h, w] at ``layer`` (default: :func:`~xaibench.methods.layers.default_cam_layer`)
    for the target logits, at the layer's resolution.

    The layer's output is captured by a forward hook (removed afterwards, also on error); token
    outputs [B, T, C] of a vision transformer are read as [B, C, h, w] on the patch grid
    (:func:`~xaibench.methods.layers.to_grid`). Runs in eval mode with gradients enabled.
    """
    module = find_layer(model, layer)
    name = layer or default_cam_layer(model)
    grid = token_grid(model, tuple(images.shape[-2:]))
    outputs: list[torch.Tensor] = []

    def keep(mod: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        outputs.append(output)

    with eval_mode(model), torch.enable_grad():
        handle = module.register_forward_hook(keep)
        try:
            logits = model(images.detach().requires_grad_(True))
        finally:
            handle.remove()
        if len(outputs) != 1 or not isinstance(outputs[0], torch.Tensor):
            raise ValueError(f"Grad-CAM layer {name!r} must be called once per forward and return one "
                             f"tensor; it was called {len(outputs)} time(s)"
                             + ("" if not outputs else f" and returned {type(outputs[0]).__name__}"))
        (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), outputs[0])
    return gradcam_map(to_grid(outputs[0].detach(), grid), to_grid(grad, grid), relu=relu)


class GradCAM(Method):
    """Grad-CAM: gradient-weighted activations of a layer, upsampled to the image size.

    Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization", ICCV 2017; the same computation as captum's ``LayerGradCam`` (checked against it
    in the tests), on the layer's output read as an image map. Channel reduction: the
    gradient-weighted sum over the layer's channels, then ReLU (signed when ``relu`` is false).
    On a vision transformer the default layer is the last block's first LayerNorm and the patch
    tokens are reshaped to their grid, the class token dropped (see
    :mod:`xaibench.methods.layers` for why not the last block's output).

    Args:
        layer: dotted module name to explain; default: the model's ``cam_layer`` (the last conv
            stage, e.g. ``net.layer4`` for ResNets), else its family's default (the last Conv2d
            of a CNN, ``blocks.<last>.norm1`` of a timm ViT/DeiT,
            ``encoder.layers.encoder_layer_<last>.ln_1`` of a torchvision ViT).
        relu: apply ReLU to the map (the paper's definition).
        interpolation: how the layer-resolution map is upsampled to H x W.
    """

    reduction = "gradient-weighted channel sum, then ReLU"
    passes_per_image = 1

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

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Grad-CAM maps [B, H, W] for images [B, 3, H, W]."""
        from captum.attr import LayerAttribution

        cam = layer_gradcam(model, self.layer, images, targets, relu=self.relu)
        cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode=self.interpolation)
        return cam.sum(1).float()
