"""Attribution localisation: the share of relevance inside the mask (Kohlbrenner et al. 2020)."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.metrics.relevance_mass import reduce_relevance
from xaibench.plugins import Metric, MetricOutput


def attribution_localisation(attributions: torch.Tensor, masks: torch.Tensor, *, positive_only: bool = False,
                             weighted: bool = False) -> torch.Tensor:
    """mu = sum(r inside m) / sum(r) per image, [B]; with ``weighted``, mu * n / |m|.

    r = |a| (or max(a, 0) with ``positive_only``); n = H * W. NaN where the mask is empty; an
    all-zero map scores 0.

    Args:
        attributions: [B, H, W].
        masks: [B, H, W] bool.
    """
    r = reduce_relevance(attributions, positive_only=positive_only).flatten(1).double()
    m = masks.flatten(1).bool()
    total = r.sum(1)
    mu = torch.where(total > 0, (r * m).sum(1) / total.clamp(min=torch.finfo(torch.float64).tiny), 0.0)
    area = m.sum(1).double()
    if weighted:
        mu = mu * m.shape[1] / area.clamp(min=1)
    return torch.where(area > 0, mu, torch.nan).float()


class AttributionLocalisation(Metric):
    """Attribution localisation: share of the map's positive (or absolute) relevance inside the mask.

    Kohlbrenner, Bauer, Nakajima, Binder, Samek and Lapuschkin, "Towards best practice in
    explaining neural network decisions with LRP", IJCNN 2020; Quantus' AttributionLocalisation:
    mu = sum_{m} r / sum r, r = |a| (Quantus' default ``abs=True``) or max(a, 0). ``weighted``
    gives the paper's size-weighted mu_w = mu * n / |m| (n = H * W pixels): 1 is what a map that
    ignores the object gets by chance.

    Differences from Quantus: its ``weighted`` multiplies by |m| divided by the size of the batch
    less two images (``x_batch[2:].size``), not the paper's n / |m|; here the paper's weight. Its
    denominator adds 1e-9 (here an all-zero map scores 0 and no epsilon is added). Images with an
    empty mask score NaN.

    Args:
        reduction: "abs" (default) or "positive" (max(a, 0), Quantus' ``positive_attributions``).
        weighted: multiply by n / |m| (Kohlbrenner et al.'s weighted localisation).
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, reduction: Literal["abs", "positive"] = "abs", weighted: bool = False) -> None:
        self.reduction = reduction
        self.weighted = weighted

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("attribution_localisation needs ground-truth masks")
        return MetricOutput(scores={"attribution_localisation": attribution_localisation(
            attributions, masks, positive_only=self.reduction == "positive", weighted=self.weighted)})
