"""Monotonicity correlation: does a feature's relevance rank with the change its removal makes
(Nguyen and Martinez 2020)."""

from __future__ import annotations

import math
from typing import Literal

import torch

from xaibench.metrics.auc import average_ranks
from xaibench.metrics.faithfulness_correlation import pearson
from xaibench.metrics.perturbation import Autocast, generated_scores, score_targets
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range

__all__ = ["MonotonicityCorrelation", "monotonicity_correlation", "spearman"]


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation along dim 1 of [B, n] pairs -> [B] float64 (ties: average ranks,
    as scipy's ``spearmanr``; NaN where a side is constant)."""
    return pearson(average_ranks(a.double()), average_ranks(b.double()))


def monotonicity_correlation(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                             targets: torch.Tensor, fills: torch.Tensor, *, pixels_per_step: int,
                             eps: float = 1e-5, score: str = "softmax", chunk_size: int = 128,
                             autocast: Autocast = "off", channels_last: bool = False) -> torch.Tensor:
    """Spearman correlation over steps of (relevance of the step's pixels, mean squared change), [B].

    Pixels are sorted by ascending a (ties by pixel index); step j takes the pixels of ranks
    j*n .. (j+1)*n - 1 (n = ``pixels_per_step``; the last step may be smaller) and, for each of
    the K samples, replaces them (all channels) in the clean image by the gray level
    ``fills[b, j, k]``. With y = f(x) and y_jk the score of that input::

        v_j = mean_k (y_jk - y)^2 / y^2   (1 instead of 1 / y^2 where |y| < eps)
        score = Spearman( (sum of a over step j)_j , (v_j)_j )

    Args:
        images: [B, 3, H, W] in [0, 1].
        attributions: [B, H, W].
        targets: [B] classes scored.
        fills: [B, J, K] the replacement values, J = ceil(H * W / n) steps, K samples.
        score: "softmax", "logit" or "predicted".

    Returns:
        [B] float32; NaN where either side is constant over the steps.
    """
    b, c, h, w = images.shape
    device = images.device
    steps = math.ceil(h * w / pixels_per_step)
    if fills.shape[:2] != (b, steps):
        raise ValueError(f"fills must be [B={b}, steps={steps}, K]; got {tuple(fills.shape)}")
    samples = fills.shape[2]
    fills = fills.to(device=device, dtype=images.dtype)
    a = attributions.to(device).flatten(1)
    order = torch.sort(a, dim=1, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=device).expand(b, -1))
    step_of = torch.div(rank, pixels_per_step, rounding_mode="floor").view(b, 1, h, w)  # [B, 1, H, W]
    options = dict(chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    classes, engine_score = score_targets(model, images, targets.to(device), score, **options)
    clean = generated_scores(model, b, lambda r: images[r], classes, score=engine_score, **options)

    def make(r: torch.Tensor) -> torch.Tensor:  # row r: image r % B, step j, sample k
        img, rest = r % b, torch.div(r, b, rounding_mode="floor")
        j, k = torch.div(rest, samples, rounding_mode="floor"), rest % samples
        where = step_of[img] == j.view(-1, 1, 1, 1)
        return torch.where(where, fills[img, j, k].view(-1, 1, 1, 1), images[img])

    rows = b * steps * samples
    perturbed = generated_scores(model, rows, make, classes.repeat(steps * samples), score=engine_score,
                                 **options).view(steps, samples, b).double()
    y = clean.double()
    inv = torch.where(y.abs() >= eps, 1.0 / y.abs(), 1.0).square()
    variances = ((perturbed - y).square().mean(1) * inv).t()  # [B, J]
    sums = torch.zeros(b, steps, dtype=torch.float64, device=device).scatter_add_(
        1, step_of.view(b, -1), a.double())
    return spearman(sums, variances).float()


class MonotonicityCorrelation(Metric):
    """Monotonicity correlation: Spearman correlation of pixel groups' relevance and the change
    replacing them makes.

    Nguyen and Martinez, "On quantitative aspects of model interpretability", arXiv:2007.07584
    (2020); Quantus' MonotonicityCorrelation. Pixels sorted by ascending relevance are taken
    ``pixels_per_step`` at a time; each group is replaced (alone, in the clean image) by a
    uniform random gray level, ``samples`` times; the score is the Spearman correlation over the
    groups of their summed relevance and the mean squared change of f divided by f(x)^2. Higher
    is better (a faithful map ranks the groups as the model's sensitivity does). All
    B x groups x samples inputs go through the model in chunks of ``chunk_size``; the gray levels
    are drawn from a generator seeded with ``seed`` for each batch, one per (image, group, sample)
    as Quantus' "uniform" baseline.

    Differences from Quantus: steps are counted in pixels (all three channels of a pixel at once;
    Quantus' ``features_in_step`` counts channel values, so Quantus with ``features_in_step = 3 n``
    is this metric with ``pixels_per_step = n``); ties in the map are broken by pixel index
    (Quantus: numpy's unstable ``argsort``); the default score is the softmax probability (Quantus'
    default: logits). With the same gray levels the scores are equal.

    Args:
        pixels_per_step: n, the pixels replaced together (H * W / n groups).
        samples: K, the random gray levels per group (Quantus' ``nr_samples``).
        eps: below |f(x)| < eps the change is not divided by f(x)^2.
        score: "softmax" of the run's target class, "predicted" (of the class predicted on the
            clean image) or the target's "logit".
        seed: seeds the gray levels (afresh for each batch).
        chunk_size: the most inputs the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes (a CUDA speed-up).
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    family = "faithfulness"
    higher_is_better = True

    def __init__(self, *, pixels_per_step: int = 256, samples: int = 10, eps: float = 1e-5,
                 score: Literal["softmax", "predicted", "logit"] = "softmax", seed: int = 0,
                 chunk_size: int = 128, autocast: Literal["off", "bf16", "fp16"] = "off",
                 channels_last: bool = False) -> None:
        check_range("pixels_per_step", pixels_per_step, low=1)
        check_range("samples", samples, low=1)
        check_range("eps", eps, low=0.0)
        check_range("chunk_size", chunk_size, low=1)
        self.pixels_per_step = pixels_per_step
        self.samples = samples
        self.eps = eps
        self.score = score
        self.seed = seed
        self.chunk_size = chunk_size
        self.autocast = autocast
        self.channels_last = channels_last

    def check_image_size(self, height: int, width: int) -> None:
        if math.ceil(height * width / self.pixels_per_step) < 3:
            raise ParamError("pixels_per_step", f"{self.pixels_per_step} leaves fewer than 3 groups of the "
                                                f"{height * width} pixels of {height}x{width} images")

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        b, _, h, w = images.shape
        gen = torch.Generator().manual_seed(self.seed)
        fills = torch.rand(b, math.ceil(h * w / self.pixels_per_step), self.samples, generator=gen)
        return MetricOutput(scores={"monotonicity_correlation": monotonicity_correlation(
            model, images, attributions, targets, fills, pixels_per_step=self.pixels_per_step, eps=self.eps,
            score=self.score, chunk_size=self.chunk_size, autocast=self.autocast,
            channels_last=self.channels_last)})
