"""RISE insertion: the score's AUC as the most relevant pixels return to a blurred image."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaibench.metrics.deletion import check_step, pixel_steps
from xaibench.metrics.perturbation import (
    CurveMetric,
    CurveRequest,
    EngineSettings,
    Score,
    SubstrateName,
    auc,
    check_blur_fits,
)
from xaibench.plugins import MetricOutput, check_range


@dataclass(frozen=True, kw_only=True)
class Insertion(EngineSettings, CurveMetric):
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
        substrate: the start image: "blur" (default; ``blur_kernel`` 11, ``blur_sigma`` 5 as
            RISE), "black", "white", "gray", "mean" or "uniform" (noise drawn once per image
            from ``seed``).
        score: "predicted" (RISE), "softmax" of the run's target class, or its "logit".
        blur_kernel, blur_sigma, seed, chunk_size, autocast, channels_last: the engine's options
            (:class:`~xaibench.metrics.perturbation.EngineSettings`).
    """

    family = "faithfulness"
    higher_is_better = True

    step: int = 224
    substrate: SubstrateName = "blur"
    score: Score = "predicted"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("step", self.step, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        check_step(self.step, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def requests(self, height: int, width: int) -> dict[str, CurveRequest]:
        return {"curve": self.request(patch_size=1, patches_per_step=self.step, insertion=True,
                                      steps=pixel_steps(height, width, self.step))}

    def from_curves(self, curves: dict[str, torch.Tensor]) -> MetricOutput:
        return MetricOutput(scores={"insertion": auc(curves["curve"])}, curves={"curve": curves["curve"]})
