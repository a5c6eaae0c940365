"""Relevance rank accuracy: the share of the top-K pixels inside the K-pixel ground truth."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.metrics.relevance_mass import reduce_relevance
from xaibench.plugins import Metric, MetricOutput


def relevance_rank(attributions: torch.Tensor, masks: torch.Tensor, *, positive_only: bool) -> torch.Tensor:
    """|top-K pixels of the map within the mask| / K per image, K = the mask's size -> [B].

    Pixels are ranked by descending relevance, ties by pixel index (row-major).

    Args:
        attributions: [B, H, W]; taken as absolute values, or clipped at 0 when ``positive_only``.
        masks: [B, H, W] bool ground-truth regions.

    Returns:
        [B] in [0, 1]; NaN where the mask is empty.
    """
    a = reduce_relevance(attributions, positive_only=positive_only).flatten(1)
    m = masks.flatten(1).bool()
    k = m.sum(1)
    order = torch.sort(a, dim=1, descending=True, stable=True).indices
    hits = m.gather(1, order).cumsum(1)
    top = hits.gather(1, (k - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    share = top.double() / k.clamp(min=1).double()
    return torch.where(k > 0, share, torch.nan).float()


class RelevanceRank(Metric):
    """Relevance rank accuracy: of the K most relevant pixels, the share inside the K-pixel mask.

    Arras, Osman and Samek, "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of
    neural network explanations", Information Fusion 2022 (Quantus' RelevanceRankAccuracy).
    Ties in relevance are broken by pixel index. Images whose mask is empty: NaN, left out of the
    mean (the leaderboard's ``_n`` column counts the images scored).

    Args:
        reduction: "abs" ranks absolute attributions (default, as ``relevance_mass``),
            "positive" ranks positive evidence only (negatives count as 0).
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, reduction: Literal["abs", "positive"] = "abs") -> None:
        self.reduction = reduction

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("relevance_rank needs ground-truth masks")
        return MetricOutput(scores={"relevance_rank": relevance_rank(
            attributions, masks, positive_only=self.reduction == "positive")})
