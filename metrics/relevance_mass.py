"""Relevance mass accuracy: the share of attribution inside the ground-truth region."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.plugins import Metric, MetricOutput, ParamError, check_range


def reduce_relevance(attributions: torch.Tensor, *, positive_only: bool) -> torch.Tensor:
    """The relevance the ground-truth metrics count: |a|, or max(a, 0) when ``positive_only``."""
    return attributions.clamp(min=0) if positive_only else attributions.abs()


def relevance_mass(attributions: torch.Tensor, masks: torch.Tensor, *, positive_only: bool,
                   threshold: float = 0.0) -> torch.Tensor:
    """sum(a inside the mask) / sum(a) per image -> [B]; NaN where the mask is empty.

    With ``threshold`` t > 0 the map is first binarised at t x its maximum (per image, after the
    reduction), a -> [a > t * max a], so the score is the share of the pixels above the threshold
    that lie inside the mask (how the xML paper shows its maps: thresholded at 0.75).

    Equal to Quantus' RelevanceMassAccuracy on the same relevance (``abs=True, normalise=False``
    for "abs", the map clipped at 0 for "positive"), except for an all-zero map: Quantus divides
    0 by 0 (NaN); here it scores 0 (the map puts no mass on the object), so a method that
    returns nothing is not left out of the mean.

    Args:
        attributions: [B, H, W]; taken as absolute values, or clipped at 0 when ``positive_only``.
        masks: [B, H, W] bool ground-truth regions.
        threshold: t in [0, 1); 0 scores the raw map.
    """
    a = reduce_relevance(attributions, positive_only=positive_only).flatten(1).double()
    if threshold > 0:
        a = (a > threshold * a.amax(1, keepdim=True)).double()
    m = masks.flatten(1)
    inside = (a * m).sum(1)
    total = a.sum(1)
    share = torch.where(total > 0, inside / total.clamp(min=torch.finfo(torch.float64).tiny), 0.0)
    return torch.where(m.any(1), share, torch.nan).float()


class RelevanceMass(Metric):
    """Relevance mass accuracy: share of the explanation's mass inside the ground-truth mask.

    Arras, Osman and Samek, "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of
    neural network explanations", Information Fusion 2022. Images whose mask is empty (e.g.
    negatives of the synthetic dataset) have no ground-truth region: their score is NaN and they
    are left out of the mean (the leaderboard's ``_n`` column counts the images scored).

    Args:
        reduction: "abs" takes absolute attributions (default, sign-agnostic), "positive"
            keeps only positive evidence (Arras et al.).
        threshold: 0 (default) scores the raw map; t in (0, 1) scores the map binarised at
            t x its per-image maximum: the share of its pixels above that which fall inside the
            mask (Rio-Torto et al. 2020 show their maps thresholded at 0.75).
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, reduction: Literal["abs", "positive"] = "abs", threshold: float = 0.0) -> None:
        check_range("threshold", threshold, low=0.0, high=1.0)
        if threshold == 1.0:
            raise ParamError("threshold", "must be < 1 (no pixel is above its map's maximum)")
        self.reduction = reduction
        self.threshold = threshold

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("relevance_mass needs ground-truth masks")
        return MetricOutput(scores={"relevance_mass": relevance_mass(
            attributions, masks, positive_only=self.reduction == "positive", threshold=self.threshold)})
