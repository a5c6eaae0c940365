"""SRG: symmetric relevance gain, the area between the LeRF and MoRF curves (Blücher et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaibench.metrics.aopc import check_patches
from xaibench.metrics.perturbation import CurveMetric, CurveRequest, EngineSettings, auc, check_blur_fits
from xaibench.plugins import MetricOutput, check_range

__all__ = ["SRG", "abpc", "srg"]


def srg(morf: torch.Tensor, lerf: torch.Tensor) -> torch.Tensor:
    """Symmetric relevance gain per image, [B]: AUC(LeRF) - AUC(MoRF), trapezoid areas on [0, 1].

    Args:
        morf, lerf: [B, L+1] curves f(x^(k)), k = 0..L (column 0: the clean image).
    """
    return auc(lerf) - auc(morf)


def abpc(morf: torch.Tensor, lerf: torch.Tensor) -> torch.Tensor:
    """Area between the perturbation curves per image, [B]: 1/(L+1) * sum_k (lerf_k - morf_k),
    i.e. AOPC(MoRF) - AOPC(LeRF) (torchxai's ABPC).

    Args:
        morf, lerf: [B, L+1] curves.
    """
    return (lerf - morf).mean(1)


@dataclass(frozen=True, kw_only=True)
class SRG(EngineSettings, CurveMetric):
    """SRG, symmetric relevance gain: area under the LeRF curve minus area under the MoRF curve.

    Blücher, Vielhaben and Strodthoff, "Decoupling pixel flipping and occlusion strategy for
    consistent XAI benchmarks", TMLR 2024. The image's p x p patches are ranked once by summed
    relevance (ties by patch index) and replaced cumulatively by a substrate, most relevant first
    (MoRF) and least relevant first (LeRF): f(x^(k)), k = 0..L, curves [B, L+1] from the batched
    engine. Per image::

        srg  = AUC(LeRF) - AUC(MoRF)           trapezoid areas on [0, 1] (higher is better)
        abpc = 1/(L+1) sum_k (LeRF_k - MoRF_k)  area between the curves, torchxai's ABPC

    A map that ranks at random scores 0 in expectation (the two curves are then equally
    distributed). The MoRF and LeRF curves are the very curve requests of ``aopc`` with the same
    settings (same ``patch_size``, ``steps`` and engine options): a run that scores both computes
    them once, so ``srg`` then costs no forward pass. ``abpc`` equals ``aopc``'s ``gap`` on those
    settings; ``srg`` weighs the clean and the last point half (the trapezoid rule).

    Args:
        patch_size: side of the square patches, in pixels.
        steps: L, the number of patches perturbed (at most the number of patches).
        substrate, blur_kernel, blur_sigma, score, seed, chunk_size, autocast, channels_last: the
            engine's options (:class:`~xaibench.metrics.perturbation.EngineSettings`).
    """

    family = "faithfulness"
    higher_is_better = True

    patch_size: int = 8
    steps: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("patch_size", self.patch_size, low=1)
        check_range("steps", self.steps, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        check_patches(self.patch_size, self.steps, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def requests(self, height: int, width: int) -> dict[str, CurveRequest]:
        return {o: self.request(patch_size=self.patch_size, steps=self.steps, order=o)
                for o in ("morf", "lerf")}

    def from_curves(self, curves: dict[str, torch.Tensor]) -> MetricOutput:
        morf, lerf = curves["morf"], curves["lerf"]
        return MetricOutput(scores={"srg": srg(morf, lerf), "abpc": abpc(morf, lerf)},
                            curves={"morf": morf, "lerf": lerf})
