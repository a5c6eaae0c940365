"""IROF: iterative removal of features, superpixels removed most relevant first (Rieger and Hansen 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xaibench.metrics.perturbation import (
    EngineSettings,
    SubstrateName,
    check_blur_fits,
    make_substrate,
    score_targets,
    step_map_curves,
)
from xaibench.plugins import Metric, MetricOutput, check_range

__all__ = ["IROF", "irof_from_curves", "segment_order", "superpixels"]


def superpixels(images: torch.Tensor, *, n_segments: int = 100, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels of each image (scikit-image's ``slic`` with ``start_label=0``, on the
    [H, W, 3] float64 image, as Quantus), [B, H, W] long, labels 0..S_b-1 (renumbered densely)."""
    from skimage.segmentation import slic

    out = []
    for x in images.detach().cpu().double():
        labels = torch.from_numpy(slic(x.permute(1, 2, 0).numpy(), n_segments=n_segments,
                                       compactness=compactness, start_label=0))
        out.append(torch.unique(labels, return_inverse=True)[1])
    return torch.stack(out).to(images.device)


def segment_order(attributions: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(when, counts): the step at which each pixel's segment is removed, [B, H, W] (1 = first;
    segments by descending mean relevance, ties by label) and the segments per image, [B]."""
    b = segments.shape[0]
    flat = segments.flatten(1)
    most = int(flat.max()) + 1
    a = attributions.flatten(1).double()
    sums = torch.zeros(b, most, dtype=torch.float64, device=a.device).scatter_add_(1, flat, a)
    sizes = torch.zeros(b, most, dtype=torch.float64, device=a.device).scatter_add_(
        1, flat, torch.ones_like(a))
    means = torch.where(sizes > 0, sums / sizes.clamp(min=1), -torch.inf)  # absent labels go last
    order = torch.sort(means, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(most, device=a.device).expand(b, -1))
    return (rank.gather(1, flat) + 1).view_as(segments), (sizes > 0).sum(1)


def irof_from_curves(curves: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """IROF per image from curves [B, S_max + 1] of f(x^(k)) and the segment counts [B]:
    S_b - trapezoid area of f(x^(k)) / f(x) over k = 1..S_b (unit spacing), float64 [B]."""
    ratio = curves[:, 1:].double() / curves[:, :1].double()
    k = torch.arange(1, ratio.shape[1] + 1, device=curves.device)
    valid = k.view(1, -1) <= counts.view(-1, 1)
    ratio = torch.where(valid, ratio, 0.0)
    last = ratio.gather(1, (counts - 1).clamp(min=0).view(-1, 1)).squeeze(1)
    area = ratio.sum(1) - ratio[:, 0] / 2 - last / 2
    return counts.double() - area


@dataclass(frozen=True, kw_only=True)
class IROF(EngineSettings, Metric):
    """IROF: area over the curve of the score as superpixels are removed, most relevant first.

    Rieger and Hansen, "IROF: a low resource evaluation metric for explanation methods",
    ICLR 2020 workshop (arXiv:2003.08747); Quantus' IROF. Each image is cut into S superpixels
    by scikit-image's SLIC (``n_segments``, ``compactness``; Quantus' call), the segments are
    ranked by their mean relevance and replaced by the substrate cumulatively, most relevant
    first; with r_k = f(x^(k)) / f(x)::

        irof            = S - ( sum_{k=1..S} r_k - r_1 / 2 - r_S / 2 )   area over the curve, higher is better
        normalised      = irof / S                                       the same per segment

    The S_max steps of a batch run through the model in chunks of ``chunk_size`` (the
    segmentation runs on the CPU, image by image).

    Differences from Quantus: Quantus pads the curves of a batch to its largest S with zeros, so
    an image with fewer segments than another in its batch gets r_S / 2 more area under its curve
    (a lower score); here each image's score is its own. Quantus' "mean" substrate is the mean of
    the whole (partly perturbed) batch, recomputed at each step; here "mean" is the model's
    normalisation mean colour (the engine's). Segments with equal mean relevance are taken by label (Quantus:
    numpy's unstable ``argsort``). With the same substrate and images of equal segment counts the
    scores are equal.

    Args:
        n_segments: SLIC's approximate number of superpixels.
        compactness: SLIC's balance of colour and space proximity.
        substrate, blur_kernel, blur_sigma, score, seed, chunk_size, autocast, channels_last: the
            engine's options (:class:`~xaibench.metrics.perturbation.EngineSettings`).
    """

    family = "faithfulness"
    higher_is_better = True
    substrate: SubstrateName = "mean"
    directions: ClassVar[dict[str, bool | None]] = {"normalised": True}

    n_segments: int = 100
    compactness: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("n_segments", self.n_segments, low=2)
        check_range("compactness", self.compactness, low=0.0)

    def check_image_size(self, height: int, width: int) -> None:
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        segments = superpixels(images, n_segments=self.n_segments, compactness=self.compactness)
        when, counts = segment_order(attributions.to(images.device), segments)
        gen = torch.Generator().manual_seed(self.seed)
        values = make_substrate(model, images, self.substrate, blur_kernel=self.blur_kernel,
                                blur_sigma=self.blur_sigma, generator=gen)
        options = dict(chunk_size=self.chunk_size, autocast=self.autocast, channels_last=self.channels_last)
        classes, score = score_targets(model, images, targets, self.score, **options)
        curves = step_map_curves(model, images, when, classes, steps=int(counts.max()), values=values,
                                 score=score, **options)
        irof = irof_from_curves(curves, counts)
        return MetricOutput(scores={"irof": irof.float(), "normalised": (irof / counts).float()})
