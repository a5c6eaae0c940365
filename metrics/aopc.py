"""AOPC: area over the MoRF perturbation curve (Samek et al. 2017, as used by Rio-Torto et al.)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from xaibench.plugins import Metric, MetricOutput, ParamError, check_range
from xaibench.registry import METRICS

SUBSTRATES = {"black": 0.0, "white": 1.0, "gray": 0.5}


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Rows and columns of the patch grid; border patches are cut short when ``patch_size``
    does not divide the image (the grid starts at the top-left corner)."""
    return -(-height // patch_size), -(-width // patch_size)


def patch_order(attributions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patch indices [B, P] by descending summed relevance, ties broken by patch index.

    Args:
        attributions: [B, H, W]. Patches are numbered row-major on the grid of :func:`patch_grid`.
    """
    b, h, w = attributions.shape
    gh, gw = patch_grid(h, w, patch_size)
    padded = F.pad(attributions.float(), (0, gw * patch_size - w, 0, gh * patch_size - h))
    sums = padded.view(b, gh, patch_size, gw, patch_size).sum((2, 4)).flatten(1)
    return torch.sort(sums, dim=1, descending=True, stable=True).indices


def morf_curves(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    attributions: torch.Tensor,
    *,
    patch_size: int,
    steps: int,
    substrate: float,
) -> torch.Tensor:
    """Softmax probability of ``targets`` after 0..steps most-relevant-first patch replacements.

    Patches are ranked once on the unperturbed attribution and replaced cumulatively by the
    constant ``substrate`` value. Returns [B, steps + 1].
    """
    b, _, h, w = images.shape
    gh, gw = patch_grid(h, w, patch_size)
    order = patch_order(attributions, patch_size)
    removed = torch.zeros(b, gh * gw, dtype=torch.bool, device=images.device)
    rows = torch.arange(b, device=images.device)
    x = images.clone()
    scores = []
    with torch.inference_mode():
        for k in range(steps + 1):
            if k > 0:
                removed[rows, order[:, k - 1]] = True
                pixel = removed.view(b, 1, gh, gw).repeat_interleave(patch_size, 2)
                pixel = pixel.repeat_interleave(patch_size, 3)[..., :h, :w]
                x = torch.where(pixel, torch.full_like(images, substrate), images)
            probs = model(x).softmax(1)
            scores.append(probs[rows, targets])
    return torch.stack(scores, 1)


def aopc(curves: torch.Tensor) -> torch.Tensor:
    """AOPC per image: 1/(L+1) * sum_{k=0..L} (f(x^0) - f(x^k)), for curves [B, L+1]."""
    return (curves[:, :1] - curves).mean(1)


@METRICS.register("aopc")
class AOPC(Metric):
    """AOPC (MoRF): mean drop of the true-class probability as the most relevant patches go.

    Samek et al., "Evaluating the visualization of what a deep neural network has learned",
    IEEE TNNLS 2017; the variant of Rio-Torto et al. 2020: p x p patches ranked by relevance,
    replaced cumulatively by a constant substrate, AOPC = mean over k=0..L of f(x0) - f(xk).

    Args:
        patch_size: side of the square patches, in pixels.
        steps: L, the number of patches perturbed.
        substrate: the replacement colour: "black", "white" or "gray".
    """

    higher_is_better = True

    def __init__(
        self,
        *,
        patch_size: int = 8,
        steps: int = 16,
        substrate: Literal["black", "white", "gray"] = "black",
    ) -> None:
        check_range("patch_size", patch_size, low=1)
        check_range("steps", steps, low=1)
        self.patch_size = patch_size
        self.steps = steps
        self.substrate = substrate

    def check_image_size(self, height: int, width: int) -> None:
        if self.patch_size > min(height, width):
            raise ParamError("patch_size", f"{self.patch_size} is larger than the "
                                           f"{height}x{width} images; use at most {min(height, width)}")
        gh, gw = patch_grid(height, width, self.patch_size)
        if self.steps > gh * gw:
            raise ParamError("steps", f"{self.steps} exceeds the {gh * gw} patches of "
                                      f"{self.patch_size}-px patches on {height}x{width} images")

    def evaluate(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        attributions: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> MetricOutput:
        curves = morf_curves(model, images, targets, attributions, patch_size=self.patch_size,
                             steps=self.steps, substrate=SUBSTRATES[self.substrate])
        return MetricOutput(scores={"aopc": aopc(curves)}, curves={"morf": curves})
