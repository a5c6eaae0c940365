"""Average drop and increase in confidence: the score on the image seen through the map
(Chattopadhyay et al. 2018, Grad-CAM++)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from xaibench.metrics.perturbation import Autocast, class_scores, score_targets
from xaibench.plugins import Metric, MetricOutput, check_range

__all__ = ["AverageDrop", "average_drop", "min_max"]


def min_max(attributions: torch.Tensor) -> torch.Tensor:
    """(a - min a) / (max a - min a) per image, [B, H, W] in [0, 1]; a constant map becomes 0."""
    a = attributions.float().flatten(1)
    low, high = a.amin(1, keepdim=True), a.amax(1, keepdim=True)
    span = high - low
    return torch.where(span > 0, (a - low) / torch.where(span > 0, span, 1.0), 0.0).view_as(attributions)


def average_drop(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                 targets: torch.Tensor, *, score: str = "softmax", chunk_size: int = 128,
                 autocast: Autocast = "off", channels_last: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop, increase) per image, [B] each, for Y = f(x) and O = f(x * z), z = min-max scaled map:

        drop = max(0, Y - O) / Y        increase = 1 if O > Y else 0

    Args:
        images: [B, 3, H, W] in [0, 1].
        attributions: [B, H, W] (scaled by :func:`min_max`, broadcast over the channels).
        targets: [B] classes scored.
        score: "softmax", "logit" or "predicted" (the softmax of the class predicted on ``images``).
    """
    b = images.shape[0]
    options = dict(chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    classes, engine_score = score_targets(model, images, targets.to(images.device), score, **options)
    masked = images * min_max(attributions.to(images.device)).unsqueeze(1).to(images.dtype)
    both = class_scores(model, torch.cat([images, masked]), classes.repeat(2), score=engine_score, **options)
    clean, seen = both[:b].double(), both[b:].double()
    drop = (clean - seen).clamp(min=0) / clean
    return drop.float(), (seen > clean).float()


class AverageDrop(Metric):
    """Average drop and increase in confidence: the class score on the image times the scaled map.

    Chattopadhyay, Sarkar, Howlader and Balasubramanian, "Grad-CAM++: generalized gradient-based
    visual explanations for deep convolutional networks", WACV 2018; as TorchCAM and Xplique
    compute them. The map is min-max scaled per image, z = (a - min a) / (max a - min a) in
    [0, 1] (a constant map: z = 0), and the image is multiplied by it (every channel); with
    Y = f(x) and O = f(x * z)::

        average_drop           = max(0, Y - O) / Y     lower is better (the paper reports 100 x its mean)
        increase_in_confidence = [O > Y]               higher is better (its mean: the share of images)

    f is the softmax probability of the run's target class by default (``score``). One batched
    pass over the B clean and B masked images, in chunks of ``chunk_size``.

    Args:
        score: "softmax" of the run's target class, "predicted" (of the class predicted on the
            clean image) or the target's "logit" (then Y should be positive).
        chunk_size: the most inputs the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes (a CUDA speed-up).
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    family = "faithfulness"
    higher_is_better = False
    directions: ClassVar[dict[str, bool | None]] = {"increase_in_confidence": True}

    def __init__(self, *, score: Literal["softmax", "predicted", "logit"] = "softmax", chunk_size: int = 128,
                 autocast: Literal["off", "bf16", "fp16"] = "off", channels_last: bool = False) -> None:
        check_range("chunk_size", chunk_size, low=1)
        self.score = score
        self.chunk_size = chunk_size
        self.autocast = autocast
        self.channels_last = channels_last

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        drop, increase = average_drop(model, images, attributions, targets, score=self.score,
                                      chunk_size=self.chunk_size, autocast=self.autocast,
                                      channels_last=self.channels_last)
        return MetricOutput(scores={"average_drop": drop, "increase_in_confidence": increase})
