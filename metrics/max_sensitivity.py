"""Max- and avg-sensitivity: how far the map moves when the image moves a little (Yeh et al. 2019),
every noisy copy of every image explained in a few batched calls."""

from __future__ import annotations

import torch

from xaibench.metrics.reexplain import explain, uniform_noise
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_range


def relative_change(maps: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """||a(x + d) - a(x)||_F / ||a(x)||_F per image and sample: [B, n] (float64).

    A map of norm 0 is divided by 1 (as captum's ``sensitivity_max``; Quantus divides by 0).

    Args:
        maps: the maps of the images, [B, H, W].
        perturbed: the maps of the noisy copies, [B, n, H, W].
    """
    a = maps.double().flatten(1)
    diff = (perturbed.double().flatten(2) - a[:, None]).norm(dim=2)
    norm = a.norm(dim=1, keepdim=True)
    return diff / torch.where(norm == 0, 1.0, norm)


def sensitivity(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor,
                noise: torch.Tensor, *, batch_size: int, seed: int) -> torch.Tensor:
    """Relative change of the method's map under each noise sample: [B, n] (float64).

    The images and all their noisy copies ``images + noise`` (not clipped, as Quantus and captum)
    are explained together, ``batch_size`` images per call of ``method.attribute``.

    Args:
        images: [B, 3, H, W]; targets: [B].
        noise: [B, n, 3, H, W], added to each image.
        batch_size: images per call of the method.
        seed: seeds the global RNG for methods that draw from it.
    """
    b, n = noise.shape[:2]
    noisy = (images[:, None] + noise).flatten(0, 1)
    every_target = torch.cat([targets, targets.repeat_interleave(n)])
    maps = explain(method, model, torch.cat([images, noisy]), every_target, batch_size=batch_size, seed=seed)
    return relative_change(maps[:b], maps[b:].unflatten(0, (b, n)))


class MaxSensitivity(Metric):
    """Max-sensitivity (and avg-sensitivity): the largest (mean) relative change of the map under
    uniform noise in an L-infinity ball (robustness; lower is better).

    Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (in)fidelity and sensitivity of
    explanations", NeurIPS 2019; the definition of captum's ``sensitivity_max`` and Quantus'
    ``MaxSensitivity``/``AvgSensitivity`` (Frobenius norms, no normalisation of the maps). For
    each image, ``n_samples`` noisy copies x + d, d ~ U(-radius, radius) per pixel and channel
    (not clipped to [0, 1]), are explained by the run's method:

        max_sensitivity = max_d ||a(x + d) - a(x)|| / ||a(x)||,  avg_sensitivity = mean_d (same)

    a(x) is recomputed by the method, as captum does. A map of norm 0 is divided by 1 (captum;
    Quantus divides by 0). The noise of an image comes from ``seed`` and the image's contents.
    The image and its noisy copies go through the method in calls of ``batch_size`` images.

    Args:
        radius: half-width of the uniform noise, in pixel units of [0, 1] images.
        n_samples: noisy copies per image.
        batch_size: images per call of the method.
        seed: seeds the noise (and the global RNG for methods that draw from it).
    """

    family = "robustness"
    higher_is_better = False
    needs_method = True

    def __init__(self, *, radius: float = 0.02, n_samples: int = 10, batch_size: int = 64,
                 seed: int = 0) -> None:
        check_range("radius", radius, low=0.0)
        check_range("n_samples", n_samples, low=1)
        check_range("batch_size", batch_size, low=1)
        self.radius = radius
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "max_sensitivity recomputes the method's maps: pass method=")
        noise = uniform_noise(images, self.n_samples, -self.radius, self.radius, self.seed)
        s = sensitivity(model, method, images, targets, noise, batch_size=self.batch_size, seed=self.seed)
        return MetricOutput(scores={"max_sensitivity": s.amax(1).float(),
                                    "avg_sensitivity": s.mean(1).float()})
