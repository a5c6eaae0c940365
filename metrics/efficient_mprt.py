"""Efficient MPRT: the rise in the map's histogram entropy when the whole model is randomised
(Hedström et al. 2023)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from xaibench.metrics.mprt import randomise, units
from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_range
from xaibench.seeding import seeded_global_rng


def discrete_entropy(maps: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Entropy (nats) of the histogram of each map's values, ``n_bins`` equal bins from its min to
    its max (NumPy's ``histogram``, SciPy's ``entropy``; Quantus' ``discrete_entropy``): [B].

    Args:
        maps: [B, H, W].
        n_bins: the number of bins.
    """
    from scipy.stats import entropy

    out = [entropy(np.histogram(m.ravel(), bins=n_bins)[0]) for m in maps.detach().cpu().numpy()]
    return torch.tensor(out, dtype=torch.float64)


def randomised_model(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with every unit (:func:`xaibench.metrics.mprt.units`, the input block
    included) randomised by :func:`xaibench.metrics.mprt.randomise`: every layer with
    ``reset_parameters`` re-initialised after seeding with ``seed + 1``, as the last model of
    Quantus' cascade."""
    copied = copy.deepcopy(model)
    for _, unit in units(copied):
        randomise(unit, seed)
    return copied


def efficient_mprt(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor, *,
                   n_bins: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(entropy of the maps on the intact model [B], on the fully randomised copy [B]), both maps
    computed under the global RNG seeded with ``seed``."""
    def maps(net: torch.nn.Module) -> torch.Tensor:
        with seeded_global_rng(seed, images.device):
            return method.attribute(net, images, targets).detach()

    return (discrete_entropy(maps(model), n_bins),
            discrete_entropy(maps(randomised_model(model, seed)), n_bins))


class EfficientMPRT(Metric):
    """Efficient model parameter randomisation test (eMPRT): the relative rise of the map's
    complexity when the whole model is randomised (randomisation; higher is better).

    Hedström, Weber, Bareeva, Motzkus, Samek, Lapuschkin and Höhne, "Sanity checks revisited: an
    exploration to repair the model parameter randomisation test", XAI in Action workshop,
    NeurIPS 2023; the definition of Quantus' ``EfficientMPRT`` with its default complexity
    (discrete entropy of a ``n_bins``-bin histogram of the raw map):

        efficient_mprt = (H(a(theta_random)) - H(a(theta))) / H(a(theta))

    theta_random: every layer re-initialised (``reset_parameters`` after seeding with ``seed +
    1``, as Quantus). NaN where the map on the intact model has entropy 0 (a constant map).
    Quantus chooses ``n_bins`` by a rule when told one; here it is fixed. Forward passes on the
    randomised copy are not counted in costs.csv.

    Args:
        n_bins: bins of the histogram.
        seed: seeds the randomisation and the methods' RNG.
    """

    family = "randomisation"
    higher_is_better = True
    directions = {"entropy_before": None, "entropy_after": None}
    needs_method = True

    def __init__(self, *, n_bins: int = 100, seed: int = 0) -> None:
        check_range("n_bins", n_bins, low=2)
        self.n_bins = n_bins
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "efficient_mprt recomputes the method's maps: pass method=")
        before, after = efficient_mprt(model, method, images, targets, n_bins=self.n_bins, seed=self.seed)
        score = torch.where(before > 0, (after - before) / torch.where(before > 0, before, 1.0), math.nan)
        return MetricOutput(scores={"efficient_mprt": score.float().to(images.device),
                                    "entropy_before": before.float().to(images.device),
                                    "entropy_after": after.float().to(images.device)})
