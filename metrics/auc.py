"""AUC: the area under the ROC curve of the map as a detector of the mask (Fawcett 2006)."""

from __future__ import annotations

from typing import Literal

import torch

from xaibench.plugins import Metric, MetricOutput


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along dim 1 of [B, n], tied values sharing their mean rank (float64)."""
    b, n = values.shape
    order = torch.sort(values, dim=1, stable=True)
    sorted_values = order.values
    new_group = torch.ones_like(sorted_values, dtype=torch.bool)
    new_group[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    group = new_group.long().cumsum(1) - 1  # [B, n] group id of each sorted position
    position = torch.arange(1, n + 1, device=values.device, dtype=torch.float64).expand(b, n)
    sums = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(1, group, position)
    counts = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(
        1, group, torch.ones_like(position))
    mean_rank = (sums / counts.clamp(min=1)).gather(1, group)
    ranks = torch.empty_like(mean_rank)
    ranks.scatter_(1, order.indices, mean_rank)
    return ranks


def roc_auc(attributions: torch.Tensor, masks: torch.Tensor, *, absolute: bool = False) -> torch.Tensor:
    """ROC AUC of the map's values as scores of the mask's pixels, per image, [B].

    The Mann-Whitney form: P(a_in > a_out) + P(a_in = a_out) / 2 over pairs of a pixel inside and
    one outside the mask, from average ranks (exactly scikit-learn's ``roc_curve`` + ``auc``,
    ties included). NaN where the mask is empty or covers the whole image.

    Args:
        attributions: [B, H, W] (|a| with ``absolute``).
        masks: [B, H, W] bool.
    """
    a = (attributions.abs() if absolute else attributions).flatten(1).double()
    m = masks.flatten(1).bool()
    ranks = average_ranks(a)
    pos = m.sum(1).double()
    neg = m.shape[1] - pos
    u = (ranks * m).sum(1) - pos * (pos + 1) / 2
    defined = (pos > 0) & (neg > 0)
    return torch.where(defined, u / (pos * neg).clamp(min=1), torch.nan).float()


class AUC(Metric):
    """AUC: area under the ROC curve of the map's values as a detector of the mask's pixels.

    Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006; Quantus' AUC
    (scikit-learn's ``roc_curve`` and ``auc`` per image). 0.5 is chance, 1 every pixel of the
    object ranked above every pixel of the background. Ties count half, as in scikit-learn; equal
    to Quantus' on the same map. NaN where the mask is empty or covers the whole image.

    Args:
        reduction: "signed" scores a as given (Quantus' default, ``abs=False``), "abs" |a|.
    """

    family = "localisation"
    higher_is_better = True
    requires_masks = True

    def __init__(self, *, reduction: Literal["signed", "abs"] = "signed") -> None:
        self.reduction = reduction

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("auc needs ground-truth masks")
        return MetricOutput(scores={"auc": roc_auc(attributions, masks, absolute=self.reduction == "abs")})
