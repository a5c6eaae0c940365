"""Random logit test: the map of a random other class against the map of the target class
(Sixt et al. 2020), both explained in one batched call."""

from __future__ import annotations

import torch

from xaibench.metrics.local_lipschitz import scale_by_max
from xaibench.metrics.reexplain import explain, predict
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_range
from xaibench.seeding import image_generator


def ssim_flat(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """Structural similarity of the flattened maps, as Quantus' ``ssim`` (scikit-image's
    ``structural_similarity`` of the 1-D arrays: uniform window of ``win_size``, sample
    covariance, K1 = 0.01, K2 = 0.03, data range max - min over both, the mean over the windows
    that fit): [B] (float64).

    Args:
        a, b: maps [B, H, W] (or [B, n]).
        win_size: the window length.
    """
    x, y = a.double().flatten(1), b.double().flatten(1)
    both = torch.cat([x, y], 1)
    data_range = (both.amax(1) - both.amin(1)).abs()[:, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def mean(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool1d(t[:, None], win_size, stride=1)[:, 0]

    ux, uy = mean(x), mean(y)
    cov_norm = win_size / (win_size - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.mean(1)


def other_classes(images: torch.Tensor, targets: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A class other than the target for each image, uniform over the other ``num_classes - 1``,
    drawn from the image's generator (``seed`` and its contents): [B] long."""
    draws = torch.stack([torch.randint(0, num_classes - 1, (), generator=image_generator(seed, image))
                         for image in images]).to(targets.device)
    return draws + (draws >= targets).long()


def random_logit(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor,
                 others: torch.Tensor, *, normalise: bool, batch_size: int, seed: int) -> torch.Tensor:
    """SSIM (:func:`ssim_flat`) of the map for ``targets`` against the map for ``others``: [B].

    Both maps are computed in the same calls of ``method.attribute`` (the batch twice).

    Args:
        images: [B, 3, H, W]; targets, others: [B].
        normalise: divide each map by its own max |value| first.
        batch_size: images per call of the method.
        seed: seeds the global RNG for methods that draw from it.
    """
    b = len(images)
    maps = explain(method, model, torch.cat([images, images]), torch.cat([targets, others]),
                   batch_size=batch_size, seed=seed)
    if normalise:
        maps = scale_by_max(maps)
    return ssim_flat(maps[:b], maps[b:])


class RandomLogit(Metric):
    """Random logit test: the similarity of the map for a random other class to the map for the
    target class (randomisation; lower is better: a map that explains the class changes with it).

    Sixt, Granz and Landgraf, "When explanations lie: why many modified BP attributions fail",
    ICML 2020; the definition of Quantus' ``RandomLogit``: for each image a class y' != y drawn
    uniformly from the model's other classes, both maps recomputed by the method, each divided
    by its max |value| (``normalise``; Quantus divides by the maximum over the batch), and
    compared with Quantus' SSIM of the flattened maps (scikit-image, 7-long window, data range
    of both maps). The random class comes from ``seed`` and the image's contents (Quantus: one
    NumPy draw for the batch).

    Args:
        normalise: divide each map by its max |value| before comparing.
        batch_size: images per call of the method.
        seed: seeds the random classes (and the global RNG for methods that draw from it).
    """

    family = "randomisation"
    higher_is_better = False
    needs_method = True

    def __init__(self, *, normalise: bool = True, batch_size: int = 64, seed: int = 0) -> None:
        check_range("batch_size", batch_size, low=1)
        self.normalise = normalise
        self.batch_size = batch_size
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "random_logit recomputes the method's maps: pass method=")
        num_classes = predict(model, images[:1], batch_size=1).shape[1]
        if num_classes < 2:
            raise ParamError("model", "random_logit needs a model with at least two classes")
        others = other_classes(images, targets, num_classes, self.seed)
        score = random_logit(model, method, images, targets, others, normalise=self.normalise,
                             batch_size=self.batch_size, seed=self.seed)
        return MetricOutput(scores={"random_logit": score.float()})
