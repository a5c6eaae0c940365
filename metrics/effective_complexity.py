"""Effective complexity: the number of pixels whose relevance exceeds a threshold (Nguyen and
Martinez 2020)."""

from __future__ import annotations

import torch

from xaibench.metrics.pompom import scale_abs_max
from xaibench.plugins import Metric, MetricOutput, check_range


def effective_complexity(attributions: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """#{pixels with |a| / max|a| > eps} per image, [B] float (an all-zero map: 0).

    Args:
        attributions: [B, H, W], any sign or scale (scaled per image by its maximum |a|).
        eps: the threshold on the scaled map, in [0, 1).
    """
    z, _ = scale_abs_max(attributions)
    return (z > eps).flatten(1).sum(1).float()


class EffectiveComplexity(Metric):
    """Effective complexity: the number of pixels with |a| / max|a| > eps (fewer is simpler).

    Nguyen and Martinez, "On quantitative aspects of model interpretability", arXiv:2007.07584
    (2020); Quantus' EffectiveComplexity: the count of features whose absolute, max-scaled
    relevance exceeds ``eps``. Difference from Quantus: the map is divided by its own maximum |a|
    (Quantus by default by the maximum over the whole batch), so an image's score does not depend
    on its batch; with Quantus told ``normalise_axes`` per image the two are equal.

    Args:
        eps: the threshold on |a| / max|a| (Quantus' default 1e-5).
    """

    family = "complexity"
    higher_is_better = False

    def __init__(self, *, eps: float = 1e-5) -> None:
        check_range("eps", eps, low=0.0, high=1.0)
        self.eps = eps

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        return MetricOutput(scores={"effective_complexity": effective_complexity(attributions, eps=self.eps)})
