"""POMPOM: the share of the background that the explanation lights up (Rio-Torto et al. 2020)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from xaibench.plugins import Metric, MetricOutput, check_range


def scale_abs_max(attributions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, scale): z = |a| / max|a| per image in [0, 1] ([B, H, W]; an all-zero map stays zero)
    and the per-image divisor max|a| ([B])."""
    a = attributions.abs().float()
    scale = a.flatten(1).amax(1)
    z = a / torch.where(scale > 0, scale, 1.0).view(-1, 1, 1)
    return z, scale


def pompom(attributions: torch.Tensor, masks: torch.Tensor, *, eps: float = 1e-6,
           images: Literal["all", "positives"] = "all") -> torch.Tensor:
    """POMPOM per image, [B]: #{(1-m) z > eps} / (#{(1-m) > eps} + eps), z = |a| / max|a|.

    Args:
        attributions: [B, H, W] maps, any sign or scale (scaled by :func:`scale_abs_max`).
        masks: [B, H, W] bool object masks m.
        eps: the threshold above which a pixel of z counts as lit up (paper: ~1e-6).
        images: "all" scores every image; "positives" only those whose mask is not empty (NaN
            for the others).

    Returns:
        [B] in [0, 1]; NaN where the mask covers the whole image (no background: undefined). An
        empty mask makes the whole image background (or NaN with ``images = "positives"``).
    """
    z, _ = scale_abs_max(attributions)
    background = ~masks.bool()
    lit = (background & (z > eps)).flatten(1).sum(1).double()
    area = background.flatten(1).sum(1).double()
    share = lit / (area + eps)
    defined = area > 0
    if images == "positives":
        defined &= masks.flatten(1).any(1)
    elif images != "all":
        raise ValueError(f"images must be 'all' or 'positives', got {images!r}")
    return torch.where(defined, share, torch.nan).float()


class POMPOM(Metric):
    """POMPOM, percentage of meaningful pixels outside the mask (maps scaled |a| / max|a|).

    Rio-Torto, Fernandes and Teixeira, "Understanding the decisions of CNNs: an in-model
    approach", Pattern Recognition Letters 2020: #{pixels with (1-m) z > eps} /
    (#{pixels with (1-m) > eps} + eps), m the object mask, averaged over images.

    Rule for the maps (post-hoc ones are signed and unscaled): every map, the joint explainer's
    included, is taken as absolute values and divided by its maximum per image, z = |a| / max|a|,
    before the threshold (an all-zero map lights up nothing). The rule is in the output: besides
    ``pompom`` the metric reports ``scaled_by_abs_max`` (column ``<id>_scaled_by_abs_max``), the
    per-image divisor max|a|, an informational column that is not ranked.

    Images whose mask covers the whole image have no background: NaN (left out of the mean).
    An empty mask (e.g. a negative image of the synthetic dataset) makes the whole image
    background, as in the paper's hybrid loss: POMPOM is then the share of the image lit up.

    With ``images = "positives"`` only images with a non-empty mask are scored (the others NaN,
    left out of the mean): the share of the background lit up around an object, without the
    negatives' whole-image share.

    Args:
        eps: the threshold above which a scaled pixel counts as lit up (paper: ~1e-6).
        images: "all" (default) or "positives" (images whose mask is not empty).
    """

    family = "localisation"
    higher_is_better = False
    requires_masks = True
    directions: ClassVar[dict[str, bool | None]] = {"scaled_by_abs_max": None}
    figures: ClassVar[tuple[str, ...]] = ("bars",)

    def __init__(self, *, eps: float = 1e-6, images: Literal["all", "positives"] = "all") -> None:
        check_range("eps", eps, low=0.0, high=1.0)
        self.eps = eps
        self.images = images

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        if masks is None:
            raise ValueError("pompom needs ground-truth masks")
        _, scale = scale_abs_max(attributions)
        return MetricOutput(scores={"pompom": pompom(attributions, masks, eps=self.eps, images=self.images),
                                    "scaled_by_abs_max": scale})
