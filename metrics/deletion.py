"""RISE deletion: the score's AUC as the most relevant pixels are removed (Petsiuk et al. 2018)."""

from __future__ import annotations

import math

import torch

from xaibench.metrics.aopc import check_blur, check_blur_fits
from xaibench.metrics.perturbation import (
    Autocast,
    Score,
    SubstrateName,
    auc,
    perturbation_curves,
    predict,
)
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range
from xaibench.registry import METRICS


def pixel_steps(height: int, width: int, step: int) -> int:
    """n_steps = ceil(H * W / step): RISE's number of steps of ``step`` pixels."""
    return math.ceil(height * width / step)


def check_step(step: int, height: int, width: int) -> None:
    """Raise ParamError when ``step`` exceeds the image's pixel count."""
    if step > height * width:
        raise ParamError("step", f"{step} exceeds the {height * width} pixels of {height}x{width} images")


def score_targets(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, score: Score,
                  *, chunk_size: int, autocast: Autocast, channels_last: bool
                  ) -> tuple[torch.Tensor, Score]:
    """(targets, engine score) that score ``score`` relative to the clean ``images``: "predicted"
    becomes the softmax of the class the model predicts on them."""
    if score != "predicted":
        return targets, score
    return predict(model, images, chunk_size=chunk_size, autocast=autocast,
                   channels_last=channels_last), "softmax"


@METRICS.register("deletion")
class Deletion(Metric):
    """RISE deletion AUC: pixels removed most relevant first, ``step`` at a time.

    Petsiuk, Das and Saenko, "RISE: Randomized input sampling for explanation of black-box
    models", BMVC 2018. Pixels are ordered by descending attribution (ties by pixel index); each
    of n = ceil(H*W / step) steps replaces the next ``step`` pixels (all channels) by the
    substrate; the score is the softmax probability of the class predicted on the clean image;
    AUC = trapezoid on [0, 1] over the n + 1 scores: (sum(s) - s_0/2 - s_n/2) / n.

    RISE deletes to zero in the model's normalised input space; with xaibench's pixel-space
    models that is the normalisation mean colour, the default substrate "mean" (a model without
    a ``mean`` buffer falls back to the ImageNet mean, see ``FALLBACK_MEAN``). "black" is the
    other common choice. Score ``deletion`` [B]; curve ``curve`` [B, n + 1].

    Args:
        step: pixels removed per step (RISE: 224 on 224 x 224 images).
        substrate: "mean" (default), "black", "white", "gray", "blur" or "uniform" (noise drawn
            once per image from ``seed``).
        blur_kernel: odd kernel size of the "blur" substrate.
        blur_sigma: standard deviation of the "blur" substrate.
        score: "predicted" (RISE), "softmax" of the run's target class, or its "logit".
        seed: seeds the "uniform" substrate (afresh for each batch; never the global RNG).
        chunk_size: the most perturbed images the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes.
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    higher_is_better = False

    def __init__(
        self,
        *,
        step: int = 224,
        substrate: SubstrateName = "mean",
        blur_kernel: int = 11,
        blur_sigma: float = 5.0,
        score: Score = "predicted",
        seed: int = 0,
        chunk_size: int = 128,
        autocast: Autocast = "off",
        channels_last: bool = False,
    ) -> None:
        check_range("step", step, low=1)
        check_range("chunk_size", chunk_size, low=1)
        check_blur(blur_kernel, blur_sigma)
        self.step = step
        self.substrate = substrate
        self.blur_kernel = blur_kernel
        self.blur_sigma = blur_sigma
        self.score = score
        self.seed = seed
        self.chunk_size = chunk_size
        self.autocast = autocast
        self.channels_last = channels_last

    def check_image_size(self, height: int, width: int) -> None:
        check_step(self.step, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def evaluate(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        attributions: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> MetricOutput:
        h, w = images.shape[2:]
        curves = perturbation_curves(
            model, images, attributions, targets, patch_size=1, patches_per_step=self.step,
            steps=pixel_steps(h, w, self.step), order="morf", substrate=self.substrate,
            score=self.score, chunk_size=self.chunk_size,
            generator=torch.Generator().manual_seed(self.seed), blur_kernel=self.blur_kernel,
            blur_sigma=self.blur_sigma, autocast=self.autocast, channels_last=self.channels_last)
        return MetricOutput(scores={"deletion": auc(curves)}, curves={"curve": curves})
