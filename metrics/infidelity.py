"""Infidelity: how far the map's linear prediction of a perturbation's effect misses (Yeh et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from xaibench.metrics.perturbation import (
    EngineSettings,
    check_blur_fits,
    generated_scores,
    make_substrate,
    patch_grid,
    patch_index_map,
    score_targets,
    step_map_curves,
)
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range

__all__ = ["Infidelity", "infidelity_loss", "noise_infidelity", "patch_infidelity"]


def infidelity_loss(dots: torch.Tensor, drops: torch.Tensor, *, normalise: bool = False) -> torch.Tensor:
    """mean_s (I_s . a - (f(x) - f(x - I_s)))^2 per image over dim 1 of [B, S] -> [B] float64.

    With ``normalise`` (captum's ``normalize``) the dot products are first scaled by the
    least-squares factor beta = mean(dots * drops) / mean(dots^2) (0 where mean(dots^2) = 0).
    """
    dots, drops = dots.double(), drops.double()
    if normalise:
        den = dots.square().mean(1, keepdim=True)
        beta = torch.where(den > 0, (dots * drops).mean(1, keepdim=True) / den.clamp(min=1e-300), 0.0)
        dots = beta * dots
    return (dots - drops).square().mean(1)


def noise_infidelity(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                     targets: torch.Tensor, noise: torch.Tensor, *, normalise: bool = False,
                     score: str = "softmax", chunk_size: int = 128, autocast: str = "off",
                     channels_last: bool = False) -> torch.Tensor:
    """Infidelity under the perturbations ``noise`` (Yeh et al.'s and captum's definition), [B].

    Sample s perturbs image b to x - I (I = ``noise[s, b]``, not clipped); its dot product is
    sum_{c,i,j} I[c,i,j] a[i,j] (the map broadcast over the channels).

    Args:
        images: [B, 3, H, W].
        attributions: [B, H, W].
        targets: [B] classes scored.
        noise: [S, B, 3, H, W] the perturbations I.
        normalise: scale the dot products by beta first (captum's ``normalize``).
    """
    b = images.shape[0]
    samples = noise.shape[0]
    device = images.device
    noise = noise.to(device=device, dtype=images.dtype)
    options = dict(chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    classes, engine_score = score_targets(model, images, targets.to(device), score, **options)
    clean = generated_scores(model, b, lambda r: images[r], classes, score=engine_score, **options)
    flat_noise = noise.reshape(samples * b, *images.shape[1:])  # row r: sample r // B, image r % B

    def make(r: torch.Tensor) -> torch.Tensor:
        return images[r % b] - flat_noise[r]

    perturbed = generated_scores(model, samples * b, make, classes.repeat(samples), score=engine_score,
                                 **options)
    drops = (clean.view(1, b) - perturbed.view(samples, b)).t()
    dots = (noise.double() * attributions.to(device).double().unsqueeze(1)).sum((2, 3, 4)).t()  # [B, S]
    return infidelity_loss(dots, drops, normalise=normalise).float()


def patch_infidelity(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                     targets: torch.Tensor, values: torch.Tensor, *, patch_size: int, normalise: bool = False,
                     score: str = "softmax", chunk_size: int = 128, autocast: str = "off",
                     channels_last: bool = False) -> torch.Tensor:
    """Infidelity under cumulative patch replacement (Quantus' Infidelity), [B].

    The P patches of the centred grid (:func:`~xaibench.metrics.perturbation.patch_index_map`)
    are replaced by the substrate one after another in row-major order: x^(k) has patches 1..k
    replaced, k = 1..P; I_k = x - x^(k), and the loss is over the P perturbations.

    Args:
        values: the substrate, [1, 3, 1, 1] or [B, 3, H, W].
    """
    b, _, h, w = images.shape
    device = images.device
    gh, gw = patch_grid(h, w, patch_size)
    when = (patch_index_map(h, w, patch_size, device) + 1).expand(b, h, w)
    options = dict(chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    classes, engine_score = score_targets(model, images, targets.to(device), score, **options)
    curves = step_map_curves(model, images, when, classes, steps=gh * gw, values=values, score=engine_score,
                             **options)
    drops = curves[:, :1].double() - curves[:, 1:].double()  # [B, P]
    diff = (images.double() - values.double().expand_as(images)).sum(1) * attributions.to(device).double()
    per_patch = torch.zeros(b, gh * gw, dtype=torch.float64, device=device).scatter_add_(
        1, (when - 1).reshape(b, -1), diff.reshape(b, -1))
    return infidelity_loss(per_patch.cumsum(1), drops, normalise=normalise).float()


@dataclass(frozen=True, kw_only=True)
class Infidelity(EngineSettings, Metric):
    """Infidelity: mean squared error of the map's linear prediction of perturbations' effects.

    Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (in)fidelity and sensitivity of
    explanations", NeurIPS 2019; captum's ``infidelity`` and Quantus' Infidelity. Per image::

        infidelity = mean_s ( sum_{c,i,j} I_s[c,i,j] a[i,j] - (f(x) - f(x - I_s)) )^2   lower is better

    ``perturbation = "noise"`` (default; Yeh et al., captum): I_s ~ N(0, ``noise``^2) per pixel
    and channel, ``samples`` draws per image from a generator seeded with ``seed`` for each batch.
    ``perturbation = "patches"`` (Quantus): the ``patch_size`` patches are replaced by the
    substrate cumulatively in row-major order, x - I_k = the image with patches 1..k replaced.
    ``normalise`` scales the dot products by their least-squares factor beta first (captum's
    ``normalize``; infidelity is then invariant to the map's scale). All perturbed inputs go
    through the model in chunks of ``chunk_size``.

    Differences: with the same perturbations equal to captum's (noise) and to Quantus' (patches,
    one patch size, patches that divide the image; Quantus' ``n_perturb_samples`` repeats the same
    deterministic perturbations). Quantus' "black" is the image's minimum, here 0. The default
    score is the softmax probability (captum scores what the forward returns, Quantus logits).

    Args:
        perturbation: "noise" (Gaussian, Yeh et al.) or "patches" (cumulative, Quantus).
        noise: the standard deviation of the Gaussian perturbations, in pixel units of [0, 1] images.
        samples: the Gaussian perturbations per image.
        patch_size: the side of the patches of "patches".
        normalise: scale the map's predictions by beta (captum's ``normalize``).
        substrate, blur_kernel, blur_sigma, score, seed, chunk_size, autocast, channels_last: the
            engine's options (:class:`~xaibench.metrics.perturbation.EngineSettings`); the
            substrate is what replaces a patch of "patches"; ``seed`` also seeds the noise.
    """

    family = "faithfulness"
    higher_is_better = False

    perturbation: Literal["noise", "patches"] = "noise"
    noise: float = 0.1
    samples: int = 10
    patch_size: int = 4
    normalise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("noise", self.noise, low=0.0)
        check_range("samples", self.samples, low=1)
        check_range("patch_size", self.patch_size, low=1)

    def check_image_size(self, height: int, width: int) -> None:
        if self.perturbation == "patches" and self.patch_size > min(height, width):
            raise ParamError("patch_size", f"{self.patch_size} is larger than the {height}x{width} images")
        check_blur_fits(self.substrate, self.blur_kernel, height, width)

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        options = dict(normalise=self.normalise, score=self.score, chunk_size=self.chunk_size,
                       autocast=self.autocast, channels_last=self.channels_last)
        gen = torch.Generator().manual_seed(self.seed)
        if self.perturbation == "noise":
            noise = self.noise * torch.randn(self.samples, *images.shape, generator=gen)
            scores = noise_infidelity(model, images, attributions, targets, noise, **options)
        else:
            values = make_substrate(model, images, self.substrate, blur_kernel=self.blur_kernel,
                                    blur_sigma=self.blur_sigma, generator=gen)
            scores = patch_infidelity(model, images, attributions, targets, values,
                                      patch_size=self.patch_size, **options)
        return MetricOutput(scores={"infidelity": scores})
