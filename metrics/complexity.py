"""Complexity: the entropy of the explanation's share of |relevance| (Bhatt et al. 2020)."""

from __future__ import annotations

import math

import torch

from xaibench.plugins import Metric, MetricOutput


def complexity(attributions: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of p = |a| / sum|a| per image, [B]: -sum_i p_i log(p_i + 1e-12).

    0 for a map with one non-zero pixel, log(n) for a uniform map (n = H * W pixels). An all-zero
    map has no distribution: it scores log(n), as the uniform map (Quantus: 0/0, NaN).

    Args:
        attributions: [B, H, W], any sign or scale.
    """
    a = attributions.abs().double().flatten(1)
    total = a.sum(1, keepdim=True)
    p = a / torch.where(total > 0, total, 1.0)
    entropy = -(p * torch.log(p + 1e-12)).sum(1)
    return torch.where(total.squeeze(1) > 0, entropy, math.log(a.shape[1])).float()


class Complexity(Metric):
    """Complexity: entropy of the map's share of |relevance| per pixel (lower is simpler).

    Bhatt, Weller and Moura, "Evaluating and aggregating feature-based model explanations",
    IJCAI 2020; Quantus' Complexity: p = |a| / sum|a|, complexity = -sum p log(p + 1e-12), in
    [0, log(H * W)]. It reads only the map. Equal to Quantus' (``abs=True``; its default
    division by the maximum does not change p); an all-zero map scores log(H * W) here, NaN there.
    """

    family = "complexity"
    higher_is_better = False

    def __init__(self) -> None:
        pass

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        return MetricOutput(scores={"complexity": complexity(attributions)})
