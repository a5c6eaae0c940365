"""AOPC: area over the MoRF perturbation curve, with the LeRF control (Samek et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xaibench.metrics.perturbation import (
    CurveMetric,
    CurveRequest,
    EngineSettings,
    aopc,
    check_blur,
    check_blur_fits,
    max_steps,
)
from xaibench.plugins import MetricOutput, ParamError, check_range

__all__ = ["AOPC", "aopc", "check_blur", "check_blur_fits", "check_patches"]


def check_patches(patch_size: int, steps: int, height: int, width: int, patches_per_step: int = 1) -> None:
    """Raise ParamError when ``patch_size`` exceeds the image or ``steps`` the patches it has."""
    if patch_size > min(height, width):
        raise ParamError("patch_size", f"{patch_size} is larger than the {height}x{width} images; "
                                       f"use at most {min(height, width)}")
    most = max_steps(height, width, patch_size, patches_per_step)
    if steps > most:
        raise ParamError("steps", f"{steps} exceeds the {most} patches of {patch_size}-px patches "
                                  f"on {height}x{width} images")


@dataclass(frozen=True, kw_only=True)
class AOPC(EngineSettings, CurveMetric):
    """AOPC (MoRF), with the LeRF AOPC and the MoRF-LeRF gap: mean drop of the score as patches go.

    Samek, Binder, Montavon, Lapuschkin and Müller, "Evaluating the visualization of what a deep
    neural network has learned", IEEE TNNLS 2017; the variant of Rio-Torto et al. 2020 (xML):
    p x p patches ranked once by summed relevance (ties by patch index), replaced cumulatively by
    a substrate; AOPC = 1/(L+1) * sum_{k=0..L} f(x^(0)) - f(x^(k)) per image. All curves come from
    the batched engine (:func:`xaibench.metrics.perturbation.perturbation_curves`; patch sizes that
    do not divide the image: a centred grid with cut-short border patches, as in Quantus).

    Scores: ``aopc`` (MoRF, higher is better), ``lerf`` (the same with the least relevant patches
    first: lower is better) and ``gap`` = MoRF - LeRF (higher is better); curves ``morf`` and
    ``lerf``, [B, L+1]. ``lerf = false`` skips the LeRF pass (half the forward passes).

    Args:
        patch_size: side of the square patches, in pixels.
        steps: L, the number of patches perturbed (at most the number of patches).
        lerf: also compute the LeRF curve and the gap.
        substrate, blur_kernel, blur_sigma, score, seed, chunk_size, autocast, channels_last: the
            engine's options (:class:`~xaibench.metrics.perturbation.EngineSettings`); f is the
            ``score`` of the run's target class (the true class by default, see ``[run] target``).
    """

    family = "faithfulness"
    higher_is_better = True
    directions: ClassVar[dict[str, bool | None]] = {"lerf": False, "gap": True}
    figures: ClassVar[tuple[str, ...]] = ("aopc-steps", "aopc-grid")

    patch_size: int = 8
    steps: int = 16
    lerf: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("patch_size", self.patch_size, low=1)
        check_range("steps", self.steps, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        check_patches(self.patch_size, self.steps, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def requests(self, height: int, width: int) -> dict[str, CurveRequest]:
        orders = ("morf", "lerf") if self.lerf else ("morf",)
        return {o: self.request(patch_size=self.patch_size, steps=self.steps, order=o) for o in orders}

    def from_curves(self, curves: dict[str, torch.Tensor]) -> MetricOutput:
        out = MetricOutput(scores={"aopc": aopc(curves["morf"])}, curves={"morf": curves["morf"]})
        if "lerf" in curves:
            out.scores["lerf"] = aopc(curves["lerf"])
            out.scores["gap"] = out.scores["aopc"] - out.scores["lerf"]
            out.curves["lerf"] = curves["lerf"]
        return out
