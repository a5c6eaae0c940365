"""RISE insertion: the score's AUC as the most relevant pixels return to a blurred image."""

from __future__ import annotations

import torch

from xaibench.metrics.aopc import check_blur, check_blur_fits
from xaibench.metrics.deletion import check_step, pixel_steps, score_targets
from xaibench.metrics.perturbation import (
    Autocast,
    Score,
    SubstrateName,
    auc,
    make_substrate,
    perturbation_curves,
)
from xaibench.plugins import Metric, MetricOutput, check_range
from xaibench.registry import METRICS


@METRICS.register("insertion")
class Insertion(Metric):
    """RISE insertion AUC: clean pixels put back most relevant first, ``step`` at a time.

    Petsiuk, Das and Saenko, "RISE: Randomized input sampling for explanation of black-box
    models", BMVC 2018. The start image is the substrate (default: the image Gaussian-blurred
    with an 11 x 11 kernel, sigma 5, reflect padding); each of n = ceil(H*W / step) steps copies
    the next ``step`` most relevant original pixels (ties by pixel index) back in; the score is
    the softmax probability of the class predicted on the clean image; AUC = trapezoid on [0, 1]
    over the n + 1 scores: (sum(s) - s_0/2 - s_n/2) / n (higher is better). Score ``insertion``
    [B]; curve ``curve`` [B, n + 1].

    Args:
        step: pixels inserted per step (RISE: 224 on 224 x 224 images).
        substrate: the start image: "blur" (default), "black", "white", "gray", "mean" or
            "uniform" (noise drawn once per image from ``seed``).
        blur_kernel: odd kernel size of the "blur" start image (RISE: 11).
        blur_sigma: its standard deviation in pixels (RISE: 5).
        score: "predicted" (RISE), "softmax" of the run's target class, or its "logit".
        seed: seeds the "uniform" substrate (afresh for each batch; never the global RNG).
        chunk_size: the most perturbed images the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes.
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    higher_is_better = True

    def __init__(
        self,
        *,
        step: int = 224,
        substrate: SubstrateName = "blur",
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
        start = make_substrate(model, images, self.substrate, blur_kernel=self.blur_kernel,
                               blur_sigma=self.blur_sigma,
                               generator=torch.Generator().manual_seed(self.seed))
        chosen, score = score_targets(model, images, targets, self.score, chunk_size=self.chunk_size,
                                      autocast=self.autocast, channels_last=self.channels_last)
        curves = perturbation_curves(
            model, start.expand_as(images), attributions, chosen, patch_size=1,
            patches_per_step=self.step, steps=pixel_steps(h, w, self.step), order="morf",
            substrate=images, score=score, chunk_size=self.chunk_size, autocast=self.autocast,
            channels_last=self.channels_last)
        return MetricOutput(scores={"insertion": auc(curves)}, curves={"curve": curves})
