"""Smooth MPRT: the model parameter randomisation test on maps averaged over noisy copies of the
image (Hedström et al. 2023), every noisy copy of every image explained in a few batched calls."""

from __future__ import annotations

import torch

from xaibench.metrics.mprt import ORDERS, randomised_models, spearman
from xaibench.metrics.reexplain import explain, normal_noise
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_choice, check_range


def noise_scale(images: torch.Tensor, noise_magnitude: float) -> torch.Tensor:
    """The noise's standard deviation per image, ``noise_magnitude`` x (max - min) of the image
    over its channels and pixels: [B]."""
    flat = images.flatten(1)
    return noise_magnitude * (flat.amax(1) - flat.amin(1))


def smooth_maps(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor,
                noise: torch.Tensor, *, batch_size: int, seed: int) -> torch.Tensor:
    """|mean of the method's maps over the image and its noisy copies|: [B, H, W] (float64).

    As Quantus' ``SmoothMPRT``: the mean over n = k + 1 maps, the image itself (Quantus' last,
    noise-free sample) and its k noisy copies; the absolute value is taken after averaging.

    Args:
        images: [B, 3, H, W]; targets: [B].
        noise: [B, k, 3, H, W], added to each image (not clipped).
        batch_size: images per call of the method.
        seed: seeds the global RNG for methods that draw from it.
    """
    b, k = noise.shape[:2]
    noisy = (images[:, None] + noise).flatten(0, 1)
    every_target = torch.cat([targets, targets.repeat_interleave(k)])
    maps = explain(method, model, torch.cat([images, noisy]), every_target, batch_size=batch_size,
                   seed=seed).double()
    return ((maps[:b] + maps[b:].unflatten(0, (b, k)).sum(1)) / (k + 1)).abs()


def smooth_cascade(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor,
                   noise: torch.Tensor, *, seed: int, stages: int | None, order: str,
                   batch_size: int) -> torch.Tensor:
    """Spearman correlation of the smoothed maps (:func:`smooth_maps`, the same noise at every
    stage) on the randomised copies (:func:`xaibench.metrics.mprt.randomised_models`) with those
    on the intact model: [B, S+1], column 0 the intact model against itself."""
    def maps(net: torch.nn.Module) -> torch.Tensor:
        return smooth_maps(net, method, images, targets, noise, batch_size=batch_size, seed=seed)

    original = maps(model)
    rho = [spearman(original, original)]
    for randomised in randomised_models(model, seed=seed, stages=stages, order=order):
        rho.append(spearman(original, maps(randomised)))
    return torch.stack(rho, 1)


class SmoothMPRT(Metric):
    """Smooth model parameter randomisation test (sMPRT): the MPRT cascade on maps denoised by
    averaging over noisy copies of the image (randomisation; lower is better).

    Hedström, Weber, Bareeva, Motzkus, Samek, Lapuschkin and Höhne, "Sanity checks revisited: an
    exploration to repair the model parameter randomisation test", XAI in Action workshop,
    NeurIPS 2023; the definition of Quantus' ``SmoothMPRT``. The map of an image is |the mean of
    the method's maps over the image and ``n_samples - 1`` copies x + N(0, s^2)|, s =
    ``noise_magnitude`` x (max - min of the image); the model's units are randomised as in
    ``mprt`` (from the unit above the input block up by default, as Quantus' default order) and
    the Spearman rank correlation of the smoothed maps with those of the intact model is taken
    after each stage. The score is the correlation after the last stage (``order =
    "independent"``: the mean over the stages); curve ``smooth_mprt_spearman`` holds every stage.
    The same noise (from ``seed`` and each image's contents) is used at every stage; Quantus
    draws new noise for every layer and batch. Units as ``mprt``: Quantus goes layer by layer
    and also randomises the input layer. All noisy copies go through the method in calls of
    ``batch_size`` images.

    Args:
        n_samples: maps averaged per image (the image itself and ``n_samples - 1`` noisy copies).
        noise_magnitude: the noise's standard deviation relative to the image's value range.
        stages: the number of stages (as ``mprt``); None: one per unit.
        order: "bottom_up", "top_down" or "independent".
        batch_size: images per call of the method.
        seed: seeds the noise, the randomisation and the methods' RNG.
    """

    family = "randomisation"
    higher_is_better = False
    needs_method = True

    def __init__(self, *, n_samples: int = 16, noise_magnitude: float = 0.1, stages: int | None = None,
                 order: str = "bottom_up", batch_size: int = 64, seed: int = 0) -> None:
        check_range("n_samples", n_samples, low=1)
        check_range("noise_magnitude", noise_magnitude, low=0.0)
        if stages is not None:
            check_range("stages", stages, low=1)
        check_choice("order", order, ORDERS)
        check_range("batch_size", batch_size, low=1)
        self.n_samples = n_samples
        self.noise_magnitude = noise_magnitude
        self.stages = stages
        self.order = order
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "smooth_mprt recomputes the method's maps: pass method=")
        scale = noise_scale(images, self.noise_magnitude)[:, None, None, None, None]
        noise = scale * normal_noise(images, self.n_samples - 1, self.seed)
        rho = smooth_cascade(model, method, images, targets, noise, seed=self.seed, stages=self.stages,
                             order=self.order, batch_size=self.batch_size)
        score = rho[:, 1:].mean(1) if self.order == "independent" and rho.shape[1] > 1 else rho[:, -1]
        return MetricOutput(scores={"smooth_mprt": score}, curves={"spearman": rho})
