"""AOPC: area over the MoRF perturbation curve, with the LeRF control (Samek et al. 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch

from xaibench.metrics.perturbation import (
    Autocast,
    Score,
    SubstrateName,
    aopc,
    max_steps,
    perturbation_curves,
)
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range
from xaibench.registry import METRICS

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


def check_blur(kernel: int, sigma: float) -> None:
    """Raise ParamError unless the blur kernel is odd and positive and sigma positive."""
    if kernel < 1 or kernel % 2 == 0:
        raise ParamError("blur_kernel", f"must be an odd number >= 1, got {kernel}")
    if sigma <= 0:
        raise ParamError("blur_sigma", f"must be > 0, got {sigma}")


def check_blur_fits(substrate: str, kernel: int, height: int, width: int) -> None:
    """Raise ParamError when a "blur" substrate's kernel is too large for reflect padding."""
    if substrate == "blur" and kernel // 2 >= min(height, width):
        raise ParamError("blur_kernel", f"{kernel} is too large for {height}x{width} images; use at "
                                        f"most {2 * min(height, width) - 1}")


@METRICS.register("aopc")
class AOPC(Metric):
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
        substrate: what replaces a patch: "black", "white", "gray" (0.5), "mean" (the model's
            normalisation mean colour), "blur" (the image blurred) or "uniform" (per-pixel
            U(0,1) RGB noise, drawn once per image from ``seed``).
        blur_kernel: odd kernel size of the "blur" substrate.
        blur_sigma: standard deviation (pixels) of the "blur" substrate.
        score: f = "softmax" probability of the run's target class (the true class by default,
            see ``[run] target``), "predicted": of the class predicted on the clean image, or
            the "logit" of the target.
        lerf: also compute the LeRF curve and the gap.
        seed: seeds the "uniform" substrate (a generator seeded afresh for each batch, so the
            noise of an image depends on its position in its batch, never on the global RNG).
        chunk_size: the most perturbed images the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes (a CUDA speed-up).
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    higher_is_better = True
    directions: ClassVar[dict[str, bool | None]] = {"lerf": False, "gap": True}

    def __init__(
        self,
        *,
        patch_size: int = 8,
        steps: int = 16,
        substrate: SubstrateName = "black",
        blur_kernel: int = 11,
        blur_sigma: float = 5.0,
        score: Score = "softmax",
        lerf: bool = True,
        seed: int = 0,
        chunk_size: int = 128,
        autocast: Autocast = "off",
        channels_last: bool = False,
    ) -> None:
        check_range("patch_size", patch_size, low=1)
        check_range("steps", steps, low=1)
        check_range("chunk_size", chunk_size, low=1)
        check_blur(blur_kernel, blur_sigma)
        self.patch_size = patch_size
        self.steps = steps
        self.substrate = substrate
        self.blur_kernel = blur_kernel
        self.blur_sigma = blur_sigma
        self.score = score
        self.lerf = lerf
        self.seed = seed
        self.chunk_size = chunk_size
        self.autocast = autocast
        self.channels_last = channels_last

    def check_image_size(self, height: int, width: int) -> None:
        check_patches(self.patch_size, self.steps, height, width)
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def curves(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
               attributions: torch.Tensor, order: str) -> torch.Tensor:
        """The engine's curve [B, steps+1] in ``order`` with this metric's settings."""
        return perturbation_curves(
            model, images, attributions, targets, patch_size=self.patch_size, steps=self.steps,
            order=order, substrate=self.substrate, score=self.score, chunk_size=self.chunk_size,
            generator=torch.Generator().manual_seed(self.seed), blur_kernel=self.blur_kernel,
            blur_sigma=self.blur_sigma, autocast=self.autocast, channels_last=self.channels_last)

    def evaluate(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        attributions: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> MetricOutput:
        morf = self.curves(model, images, targets, attributions, "morf")
        out = MetricOutput(scores={"aopc": aopc(morf)}, curves={"morf": morf})
        if self.lerf:
            lerf = self.curves(model, images, targets, attributions, "lerf")
            out.scores["lerf"] = aopc(lerf)
            out.scores["gap"] = out.scores["aopc"] - out.scores["lerf"]
            out.curves["lerf"] = lerf
        return out
