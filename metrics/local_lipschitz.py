"""Local Lipschitz estimate: the largest ratio of map change to input change under Gaussian noise
(Alvarez-Melis and Jaakkola 2018), every noisy copy explained in a few batched calls."""

from __future__ import annotations

import torch

from xaibench.metrics.reexplain import explain, normal_noise
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_range


def scale_by_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map [..., H, W] divided by its own max |value| (an all-zero map stays zero)."""
    peak = maps.abs().flatten(-2).amax(-1)[..., None, None]
    return maps / torch.where(peak > 0, peak, 1.0)


def lipschitz_ratios(maps: torch.Tensor, perturbed: torch.Tensor, images: torch.Tensor,
                     noisy: torch.Tensor) -> torch.Tensor:
    """||a(x) - a(x')||_2 / (||x - x'||_2 + 1e-10) per image and sample: [B, n] (float64), as
    Quantus' ``lipschitz_constant`` with Euclidean distances on both sides.

    Args:
        maps: [B, H, W]; perturbed: [B, n, H, W].
        images: [B, 3, H, W]; noisy: the perturbed images, [B, n, 3, H, W].
    """
    num = (maps.double().flatten(1)[:, None] - perturbed.double().flatten(2)).norm(dim=2)
    den = (images.double().flatten(1)[:, None] - noisy.double().flatten(2)).norm(dim=2)
    return num / (den + 1e-10)


def local_lipschitz(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor,
                    noise: torch.Tensor, *, normalise: bool, batch_size: int, seed: int) -> torch.Tensor:
    """Local Lipschitz estimate per image: the max over the samples of :func:`lipschitz_ratios`, [B].

    Args:
        images: [B, 3, H, W]; targets: [B].
        noise: [B, n, 3, H, W], added to each image (not clipped).
        normalise: divide every map by its own max |value| first.
        batch_size: images per call of the method.
        seed: seeds the global RNG for methods that draw from it.
    """
    b, n = noise.shape[:2]
    noisy = images[:, None] + noise
    maps = explain(method, model, torch.cat([images, noisy.flatten(0, 1)]),
                   torch.cat([targets, targets.repeat_interleave(n)]), batch_size=batch_size, seed=seed)
    if normalise:
        maps = scale_by_max(maps)
    return lipschitz_ratios(maps[:b], maps[b:].unflatten(0, (b, n)), images, noisy).amax(1)


class LocalLipschitz(Metric):
    """Local Lipschitz estimate: the largest ||a(x) - a(x')|| / ||x - x'|| over Gaussian
    neighbours x' of the image (robustness; lower is better).

    Alvarez-Melis and Jaakkola, "On the robustness of interpretability methods", ICML workshop
    2018; the definition of Quantus' ``LocalLipschitzEstimate``: ``n_samples`` neighbours
    x' = x + N(0, std^2) per pixel and channel (not clipped), Euclidean distances, 1e-10 added to
    the denominator, maps divided by their max |value| when ``normalise`` (Quantus' default,
    which divides by the maximum over the whole batch; here each map by its own, so an image's
    score does not depend on its batch). a(x) is recomputed by the method. The image and its
    neighbours go through the method in calls of ``batch_size`` images.

    Args:
        std: standard deviation of the Gaussian noise, in pixel units of [0, 1] images.
        n_samples: neighbours per image.
        normalise: divide each map by its max |value| before comparing.
        batch_size: images per call of the method.
        seed: seeds the noise (and the global RNG for methods that draw from it).
    """

    family = "robustness"
    higher_is_better = False
    needs_method = True

    def __init__(self, *, std: float = 0.1, n_samples: int = 10, normalise: bool = True,
                 batch_size: int = 64, seed: int = 0) -> None:
        check_range("std", std, low=0.0)
        check_range("n_samples", n_samples, low=1)
        check_range("batch_size", batch_size, low=1)
        self.std = std
        self.n_samples = n_samples
        self.normalise = normalise
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "local_lipschitz recomputes the method's maps: pass method=")
        noise = self.std * normal_noise(images, self.n_samples, self.seed)
        score = local_lipschitz(model, method, images, targets, noise, normalise=self.normalise,
                                batch_size=self.batch_size, seed=self.seed)
        return MetricOutput(scores={"local_lipschitz": score.float()})
