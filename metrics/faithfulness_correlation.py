"""Faithfulness correlation: does the relevance of random subsets predict the score they carry
(Bhatt et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaibench.metrics.perturbation import (
    EngineSettings,
    check_blur_fits,
    generated_scores,
    make_substrate,
    score_targets,
)
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range

__all__ = ["FaithfulnessCorrelation", "draw_subsets", "faithfulness_correlation", "pearson"]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along dim 1 of [B, n] pairs -> [B] float64 (NaN where a side is constant)."""
    a, b = a.double(), b.double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.square().sum(1) * b.square().sum(1)).sqrt()


def draw_subsets(generator: torch.Generator, batch: int, runs: int, features: int, size: int) -> torch.Tensor:
    """Random subsets [B, runs, size] long of ``features`` elements, without replacement within a
    subset, drawn run by run from ``generator`` (on its device)."""
    return torch.stack([torch.rand(batch, features, generator=generator, device=generator.device)
                        .argsort(1)[:, :size] for _ in range(runs)], dim=1)


def faithfulness_correlation(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                             targets: torch.Tensor, subsets: torch.Tensor, values: torch.Tensor, *,
                             score: str = "softmax", chunk_size: int = 128, autocast: str = "off",
                             channels_last: bool = False) -> torch.Tensor:
    """Pearson correlation over runs of (sum of a over S_r, f(x) - f(x with S_r replaced)), [B].

    Elements are the 3 * H * W input values (channel, row, column), the map broadcast over the
    channels, as in Quantus: run r replaces the elements ``subsets[:, r]`` by the substrate's
    values there, and adds up the map's values at those elements.

    Args:
        images: [B, 3, H, W] in [0, 1].
        attributions: [B, H, W].
        targets: [B] classes scored.
        subsets: [B, R, S] long indices into the flattened [3, H, W] elements.
        values: the substrate, [1, 3, 1, 1] or [B, 3, H, W] (:func:`make_substrate`).
        score: "softmax", "logit" or "predicted" (the softmax of the class predicted on ``images``).

    Returns:
        [B] float32; NaN where either side is constant over the runs.
    """
    b, c, h, w = images.shape
    device = images.device
    runs = subsets.shape[1]
    subsets = subsets.to(device)
    flat = images.reshape(b, -1)
    fill = values.expand_as(images).reshape(b, -1)
    options = dict(chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    classes, engine_score = score_targets(model, images, targets.to(device), score, **options)
    clean = generated_scores(model, b, lambda r: images[r], classes, score=engine_score, **options)

    def make(r: torch.Tensor) -> torch.Tensor:  # row r: image r % B, run r // B
        img, run = r % b, torch.div(r, b, rounding_mode="floor")
        idx = subsets[img, run]
        return flat[img].scatter(1, idx, fill[img].gather(1, idx)).view(-1, c, h, w)

    rows = b * runs
    perturbed = generated_scores(model, rows, make, classes.repeat(runs), score=engine_score, **options)
    drops = clean.view(1, b) - perturbed.view(runs, b)  # [R, B]
    a3 = attributions.to(device).double().unsqueeze(1).expand(b, c, h, w).reshape(b, -1)
    sums = a3.unsqueeze(1).expand(b, runs, -1).gather(2, subsets).sum(2)  # [B, R]
    return pearson(sums, drops.t()).float()


@dataclass(frozen=True, kw_only=True)
class FaithfulnessCorrelation(EngineSettings, Metric):
    """Faithfulness correlation: Pearson correlation of a random subset's relevance and its score drop.

    Bhatt, Weller and Moura, "Evaluating and aggregating feature-based model explanations",
    IJCAI 2020; Quantus' FaithfulnessCorrelation. For each of R ``runs`` a random subset S_r of
    ``subset_size`` input elements (of the 3 * H * W channel values; the map is broadcast over
    the channels) is replaced by the substrate; per image::

        faithfulness_correlation = Pearson_r( sum_{i in S_r} a_i , f(x) - f(x_{S_r}) )

    in [-1, 1], higher is better. All B * R perturbed inputs go through the model in chunks of
    ``chunk_size``. The subsets are drawn from a generator seeded with ``seed`` for each batch
    (run by run, per image: a uniform subset without replacement).

    Differences from Quantus: "black" is 0 (Quantus' "black" is the image's minimum value) and the
    default score is the softmax probability (Quantus' default: logits); the map is not normalised
    (Quantus divides it by its maximum, which leaves the correlation unchanged). With the same
    subsets and substrate the scores are equal.

    Args:
        runs: R, the number of random subsets per image (Quantus' ``nr_runs``).
        subset_size: the number of input elements replaced per subset (at most 3 * H * W).
        substrate, blur_kernel, blur_sigma, score, seed, chunk_size, autocast, channels_last: the
            engine's options (:class:`~xaibench.metrics.perturbation.EngineSettings`); ``seed``
            also seeds the subsets.
    """

    family = "faithfulness"
    higher_is_better = True

    runs: int = 100
    subset_size: int = 224

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("runs", self.runs, low=2)
        check_range("subset_size", self.subset_size, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        if self.subset_size >= 3 * height * width:
            raise ParamError("subset_size", f"{self.subset_size} must be smaller than the "
                                            f"{3 * height * width} input values of {height}x{width} images")
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        gen = torch.Generator().manual_seed(self.seed)
        values = make_substrate(model, images, self.substrate, blur_kernel=self.blur_kernel,
                                blur_sigma=self.blur_sigma, generator=gen)
        subsets = draw_subsets(gen, images.shape[0], self.runs, images[0].numel(), self.subset_size)
        scores = faithfulness_correlation(model, images, attributions, targets, subsets, values,
                                          score=self.score, chunk_size=self.chunk_size,
                                          autocast=self.autocast, channels_last=self.channels_last)
        return MetricOutput(scores={"faithfulness_correlation": scores})
