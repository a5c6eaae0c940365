"""Integrated Gradients: captum's ``IntegratedGradients`` with xaibench's parameters."""

from __future__ import annotations

from typing import Literal

from xaibench.methods.captum_source import CaptumMethod, baseline_images
from xaibench.plugins import check_range

__all__ = ["IntegratedGradients", "baseline_images"]

Baseline = Literal["black", "gray", "white", "mean"]
Integration = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                      "riemann_middle"]


class IntegratedGradients(CaptumMethod):
    """Integrated Gradients: the path integral of gradients from a baseline image to the input.

    Sundararajan, Taly and Yan, "Axiomatic attribution for deep networks", ICML 2017; captum's
    ``IntegratedGradients`` (the method source ``captum:IntegratedGradients`` with these
    parameters; gradients by ``torch.autograd.grad``: parameters' ``.grad`` stay untouched).
    Completeness: the attributions of an image sum to f_t(x) - f_t(baseline), up to the
    integration error. Channel reduction: signed sum over the three colour channels (keeps
    completeness). Cost: ``n_steps`` forward+backward passes per image (``passes_per_image``).

    Args:
        n_steps: integration points along the straight path (captum default 50).
        baseline: reference image: "black" (0, default), "gray" (0.5), "white" (1), or "mean": each
            image's own mean colour, a per-image stand-in for the dataset mean.
        integration: captum's quadrature ("gausslegendre" default, or a Riemann rule).
        internal_batch_size: at most this many path points (images x steps) per forward pass,
            bounding memory (at least one point per image of the batch is always evaluated
            together); results do not depend on it beyond float rounding.
    """

    library_class = "IntegratedGradients"
    channels = "sum"
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
        super().__init__(baseline=baseline, n_steps=n_steps, method=integration,
                         internal_batch_size=internal_batch_size)
        self.n_steps = n_steps
        self.integration = integration
        self.internal_batch_size = internal_batch_size

    @property
    def passes_per_image(self) -> int:
        return self.n_steps
