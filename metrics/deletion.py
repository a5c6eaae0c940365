"""RISE deletion: the score's AUC as the most relevant pixels are removed (Petsiuk et al. 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from xaibench.metrics.perturbation import (
    CurveMetric,
    CurveRequest,
    EngineSettings,
    Score,
    SubstrateName,
    auc,
    check_blur_fits,
    score_targets,
)
from xaibench.plugins import MetricOutput, ParamError, check_range

__all__ = ["Deletion", "check_step", "pixel_steps", "score_targets"]


def pixel_steps(height: int, width: int, step: int) -> int:
    """n_steps = ceil(H * W / step): RISE's number of steps of ``step`` pixels."""
    return math.ceil(height * width / step)


def check_step(step: int, height: int, width: int) -> None:
    """Raise ParamError when ``step`` exceeds the image's pixel count."""
    if step > height * width:
        raise ParamError("step", f"{step} exceeds the {height * width} pixels of {height}x{width} images")


@dataclass(frozen=True, kw_only=True)
class Deletion(EngineSettings, CurveMetric):
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
        score: "predicted" (RISE), "softmax" of the run's target class, or its "logit".
        blur_kernel, blur_sigma, seed, chunk_size, autocast, channels_last: the engine's options
            (:class:`~xaibench.metrics.perturbation.EngineSettings`).
    """

    family = "faithfulness"
    higher_is_better = False

    step: int = 224
    substrate: SubstrateName = "mean"
    score: Score = "predicted"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("step", self.step, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        check_step(self.step, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def requests(self, height: int, width: int) -> dict[str, CurveRequest]:
        return {"curve": self.request(patch_size=1, patches_per_step=self.step,
                                      steps=pixel_steps(height, width, self.step))}

    def from_curves(self, curves: dict[str, torch.Tensor]) -> MetricOutput:
        return MetricOutput(scores={"deletion": auc(curves["curve"])}, curves={"curve": curves["curve"]})
