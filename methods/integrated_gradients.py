"""Integrated Gradients through captum."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.budget import rows_that_fit
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range

Baseline = Literal["black", "gray", "white", "mean"]
Integration = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                      "riemann_middle"]


def baseline_images(images: torch.Tensor, kind: Baseline) -> torch.Tensor:
    """The IG reference point [B, 3, H, W] for images [B, 3, H, W] in [0, 1].

    "black", "gray" and "white" are the constant images 0, 0.5 and 1; "mean" is each image's own
    mean colour (its per-channel mean over pixels), a stand-in for the dataset mean, which a
    method never sees.
    """
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()
    value = {"black": 0.0, "gray": 0.5, "white": 1.0}[kind]
    return torch.full_like(images, value)


class IntegratedGradients(Method):
    """Integrated Gradients: the path integral of gradients from a baseline image to the input.

    Sundararajan, Taly and Yan, "Axiomatic attribution for deep networks", ICML 2017; computed by
    captum's ``IntegratedGradients`` (gradients by ``torch.autograd.grad``: parameters' ``.grad``
    stay untouched). Completeness: the attributions of an image sum to
    f_t(x) - f_t(baseline), up to the integration error. Channel reduction: signed sum over the
    three colour channels (keeps completeness). Cost: ``n_steps`` forward+backward passes per
    image (``passes_per_image``).

    Args:
        n_steps: integration points along the straight path (captum default 50).
        baseline: reference image: "black" (0, default), "gray" (0.5), "white" (1), or "mean": each
            image's own mean colour, a per-image stand-in for the dataset mean.
        integration: captum's quadrature ("gausslegendre" default, or a Riemann rule).
        internal_batch_size: at most this many path points (images x steps) per forward pass,
            bounding memory (at least one point per image of the batch is always evaluated
            together; lowered further to fit ``[run] memory``); results do not depend on it
            beyond float rounding.
    """

    reduction = "signed sum over channels"

    def __init__(
        self,
        *,
        n_steps: int = 50,
        baseline: Baseline = "black",
        integration: Integration = "gausslegendre",
        internal_batch_size: int = 64,
    ) -> None:
        check_range("n_steps", n_steps, low=1)
        check_range("internal_batch_size", internal_batch_size, low=1)
        self.n_steps = n_steps
        self.baseline = baseline
        self.integration = integration
        self.internal_batch_size = internal_batch_size

    @property
    def passes_per_image(self) -> int:
        return self.n_steps

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """IG maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import IntegratedGradients as CaptumIG

        x = images.detach()
        with eval_mode(model):
            attr = CaptumIG(model).attribute(
                x, baselines=baseline_images(x, self.baseline), target=targets,
                n_steps=self.n_steps, method=self.integration,
                internal_batch_size=rows_that_fit(
                    model, x[:1], grad=True, wanted=max(self.internal_batch_size, x.shape[0]),
                    least=x.shape[0], what="integrated_gradients", own="[run] batch_size"))
        return attr.detach().sum(1).float()
