"""Relative input stability: the largest relative change of the map over the relative change of
the input, among noisy copies the model classifies as the image (Agarwal et al. 2022)."""

from __future__ import annotations

import math

import torch

from xaibench.metrics.reexplain import explain, predict, uniform_noise
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_range


def ris_objective(maps: torch.Tensor, perturbed: torch.Tensor, images: torch.Tensor, noisy: torch.Tensor,
                  eps_min: float = 1e-6) -> torch.Tensor:
    """Quantus' ``relative_input_stability_objective`` per image and sample: [B, n] (float64),

        || (a - a') / a ||_2 / max(|| (x - x') / x ||_2, eps_min)

    with every element divisor that is 0 replaced by ``eps_min`` (and a denominator norm of 0 by
    ``eps_min``), norms over all elements.

    Args:
        maps: [B, H, W]; perturbed: [B, n, H, W].
        images: [B, 3, H, W]; noisy: [B, n, 3, H, W].
        eps_min: the guard against division by 0.
    """
    a = maps.double()[:, None]
    x = images.double()[:, None]
    num = ((a - perturbed.double()) / (a + (a == 0) * eps_min)).flatten(2).norm(dim=2)
    den = ((x - noisy.double()) / (x + (x == 0) * eps_min)).flatten(2).norm(dim=2)
    return num / (den + (den == 0) * eps_min)


def relative_input_stability(model: torch.nn.Module, method: Method, images: torch.Tensor,
                             targets: torch.Tensor, noise: torch.Tensor, *, eps_min: float, batch_size: int,
                             seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the objective [B, n] (float64), whether each noisy copy keeps the image's predicted class
    [B, n] (bool)).

    Args:
        images: [B, 3, H, W]; targets: [B].
        noise: [B, n, 3, H, W], added to each image (not clipped).
        eps_min: the guard against division by 0.
        batch_size: images per call of the method and of the model.
        seed: seeds the global RNG for methods that draw from it.
    """
    b, n = noise.shape[:2]
    noisy = images[:, None] + noise
    every = torch.cat([images, noisy.flatten(0, 1)])
    maps = explain(method, model, every, torch.cat([targets, targets.repeat_interleave(n)]),
                   batch_size=batch_size, seed=seed)
    labels = predict(model, every, batch_size=batch_size).argmax(1)
    kept = labels[b:].view(b, n) == labels[:b, None]
    return ris_objective(maps[:b], maps[b:].unflatten(0, (b, n)), images, noisy, eps_min), kept


class RelativeInputStability(Metric):
    """Relative input stability (RIS): the largest relative change of the map per relative change
    of the input, over noisy copies with the same prediction (robustness; lower is better).

    Agarwal, Johnson, Pawelczyk, Krishna, Saxena, Zitnik and Lakkaraju, "Rethinking stability for
    attribution-based explanations", ICLR workshop 2022; the objective of Quantus'
    ``RelativeInputStability``:

        RIS = max_{x' : argmax f(x') = argmax f(x)}  || (a - a') / a || / max(|| (x - x') / x ||, eps_min)

    with element divisors of 0 replaced by ``eps_min``. ``n_samples`` noisy copies x' = x + d,
    d ~ U(-radius, radius) per pixel and channel (not clipped); a = a(x) is recomputed by the
    method. Copies whose predicted class differs from the image's are left out of the maximum
    (NaN when all are); Quantus instead returns NaN for the whole image when any copy changes
    class, and by default draws d ~ U(0.02, 0.2) (one-sided). The image and its copies go through
    the method and the model in calls of ``batch_size`` images.

    Args:
        radius: half-width of the uniform noise, in pixel units of [0, 1] images.
        n_samples: noisy copies per image.
        eps_min: the guard against division by 0.
        batch_size: images per call of the method and of the model.
        seed: seeds the noise (and the global RNG for methods that draw from it).
    """

    family = "robustness"
    higher_is_better = False
    needs_method = True

    def __init__(self, *, radius: float = 0.02, n_samples: int = 10, eps_min: float = 1e-6,
                 batch_size: int = 64, seed: int = 0) -> None:
        check_range("radius", radius, low=0.0)
        check_range("n_samples", n_samples, low=1)
        check_range("eps_min", eps_min, low=0.0)
        check_range("batch_size", batch_size, low=1)
        self.radius = radius
        self.n_samples = n_samples
        self.eps_min = eps_min
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "relative_input_stability recomputes the method's maps: pass method=")
        noise = uniform_noise(images, self.n_samples, -self.radius, self.radius, self.seed)
        ris, kept = relative_input_stability(model, method, images, targets, noise, eps_min=self.eps_min,
                                             batch_size=self.batch_size, seed=self.seed)
        score = torch.where(kept, ris, -math.inf).amax(1)
        score = torch.where(kept.any(1), score, math.nan)
        return MetricOutput(scores={"relative_input_stability": score.float()})
