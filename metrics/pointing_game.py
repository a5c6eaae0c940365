"""Pointing game: does the explanation's maximum fall on the object? (Zhang et al. 2018)."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.plugins import Metric, MetricOutput


def pointing_game(attributions: torch.Tensor, masks: torch.Tensor, *, absolute: bool = False) -> torch.Tensor:
    """Hit rate per image, [B]: the share of the map's maximal pixels that lie in the mask.

    With a unique maximum this is 1 (hit) or 0 (miss); with ties it is the expected hit when the
    tie is broken uniformly at random (a constant map scores the mask's share of the image).

    Args:
        attributions: [B, H, W]; signed (the most positive pixel) or, with ``absolute``, |a|.
        masks: [B, H, W] bool.

    Returns:
        [B] in [0, 1]; NaN where the mask is empty (no object to point at).
    """
    a = (attributions.abs() if absolute else attributions).flatten(1)
    m = masks.flatten(1).bool()
    top = a == a.amax(1, keepdim=True)
    share = (top & m).sum(1).double() / top.sum(1).double()
    return torch.where(m.any(1), share, torch.nan).float()


class PointingGame(Metric):
    """Pointing game: 1 when the map's maximum lies inside the ground-truth mask.

    Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, "Top-down neural attention by excitation
    backprop", IJCV 2018 (without their 15-px tolerance, as Quantus' PointingGame). Ties for the
    maximum count as the share of tied pixels inside the mask (Quantus counts a hit when any tied
    pixel is inside; the two agree whenever the maximum is unique). Images with an empty mask:
    NaN, left out of the mean.

    Args:
        reduction: "signed" points with the most positive pixel; "abs" with the largest |a|.
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, reduction: Literal["signed", "abs"] = "signed") -> None:
        self.reduction = reduction

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("pointing_game needs ground-truth masks")
        return MetricOutput(scores={"pointing_game": pointing_game(
            attributions, masks, absolute=self.reduction == "abs")})
