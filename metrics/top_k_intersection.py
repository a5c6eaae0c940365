"""Top-k intersection: the share of the k most relevant pixels inside the mask (Theiner et al. 2021)."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.plugins import Metric, MetricOutput, ParamError, check_range


def top_k_intersection(attributions: torch.Tensor, masks: torch.Tensor, *, k: int,
                       absolute: bool = False, concept_influence: bool = False) -> torch.Tensor:
    """|top-k pixels ∩ m| / k per image, [B]; NaN where the mask is empty.

    The k pixels of largest a (or |a|), ties by pixel index (lower first). With
    ``concept_influence`` the share is multiplied by n / |m| (n = H * W): 1 is then the share
    a map that ignores the object gets by chance.

    Args:
        attributions: [B, H, W].
        masks: [B, H, W] bool.
        k: the number of pixels, 1 <= k <= H * W.
    """
    a = (attributions.abs() if absolute else attributions).flatten(1)
    m = masks.flatten(1).bool()
    if not 1 <= k <= a.shape[1]:
        raise ValueError(f"k must be in [1, {a.shape[1]}]; got {k}")
    top = torch.sort(a, dim=1, descending=True, stable=True).indices[:, :k]
    share = m.gather(1, top).double().mean(1)
    area = m.sum(1).double()
    if concept_influence:
        share = share * a.shape[1] / area.clamp(min=1)
    return torch.where(area > 0, share, torch.nan).float()


class TopKIntersection(Metric):
    """Top-k intersection: share of the map's k most relevant pixels that lie inside the mask.

    Theiner, Müller-Budack and Ewerth, "Interpretable semantic photo geolocation", WACV 2022
    (arXiv:2104.14995, 2021); Quantus' TopKIntersection. Equal to Quantus' on maps without ties
    (its ``argsort`` breaks ties arbitrarily, here by pixel index). Images with an empty mask
    score NaN.

    Args:
        k: the number of top pixels (Quantus' default 1000; at most H * W).
        reduction: "signed" ranks a as given (Quantus' default, ``abs=False``), "abs" ranks |a|.
        concept_influence: multiply by n / |m| (the share relative to the mask's area).
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, k: int = 1000, reduction: Literal["signed", "abs"] = "signed",
                 concept_influence: bool = False) -> None:
        check_range("k", k, low=1)
        self.k = k
        self.reduction = reduction
        self.concept_influence = concept_influence

    def check_image_size(self, height: int, width: int) -> None:
        if self.k > height * width:
            raise ParamError("k", f"{self.k} exceeds the {height * width} pixels of {height}x{width} images")

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("top_k_intersection needs ground-truth masks")
        return MetricOutput(scores={"top_k_intersection": top_k_intersection(
            attributions, masks, k=self.k, absolute=self.reduction == "abs",
            concept_influence=self.concept_influence)})
