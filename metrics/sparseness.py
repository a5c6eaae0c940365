"""Sparseness: the Gini index of the explanation (Chalasani et al. 2020, as in Quantus)."""

from __future__ import annotations

import torch

from xaibench.plugins import Metric, MetricOutput


def sparseness(attributions: torch.Tensor) -> torch.Tensor:
    """Gini index per image, [B], in [0, 1): 0 for a uniform map, near 1 for a single pixel.

    Quantus' Sparseness, per image: a = |a| / max|a| (an all-zero map stays zero, Gini 0) + 1e-7,
    sorted ascending a_(1) <= ... <= a_(n); Gini = sum_i (2i - n - 1) a_(i) / (n * sum_i a_(i)).
    (Quantus divides by the maximum over the whole batch unless told ``normalise_axes``; the
    per-image maximum keeps an image's score independent of its batch.)

    Args:
        attributions: [B, H, W].
    """
    a = attributions.abs().double().flatten(1)
    scale = a.amax(1, keepdim=True)
    a = torch.sort(a / torch.where(scale > 0, scale, 1.0) + 1e-7, dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, device=a.device, dtype=a.dtype) - n - 1
    return ((weights * a).sum(1) / (n * a.sum(1))).float()


class Sparseness(Metric):
    """Sparseness: Gini index of the absolute, max-scaled map (sparser is better).

    Chalasani, Chen, Chowdhury, Wu and Jha, "Concise explanations of neural networks using
    adversarial training", ICML 2020; the definition of Quantus' Sparseness (abs, divided by the
    maximum, + 1e-7), computed in torch per image. It reads only the map: no masks needed.
    """

    family = "complexity"
    higher_is_better = True

    def __init__(self) -> None:
        pass

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        return MetricOutput(scores={"sparseness": sparseness(attributions)})
