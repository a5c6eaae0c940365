"""Model parameter randomisation test (cascading, top down): does the map change when the model
it explains is randomised?"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch

from xaibench.plugins import Method, Metric, MetricOutput, ParamError, check_choice, check_range
from xaibench.seeding import seeded_global_rng


def _has_parameters(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters())


def units(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The model's randomisation units in forward-definition order: wrappers with a single
    parameterised child are looked through (e.g. the pixel-space ``Classifier``), then every
    parameterised child is a unit, with ``nn.Sequential``/``nn.ModuleList`` containers opened one
    level (ResNet18: conv1, bn1, layer1.0, ..., layer4.1, fc; VGG16: each conv and linear layer;
    a ViT: patch_embed, each block, norm, head). The first unit is the input block."""
    module, prefix = model, ""
    while True:
        kids = [(n, c) for n, c in module.named_children() if _has_parameters(c)]
        if len(kids) == 1 and not list(module.parameters(recurse=False)):
            prefix, module = f"{prefix}{kids[0][0]}.", kids[0][1]
            continue
        break
    out = []
    for name, child in kids:
        if isinstance(child, (torch.nn.Sequential, torch.nn.ModuleList)):
            out += [(f"{prefix}{name}.{n}", c) for n, c in child.named_children() if _has_parameters(c)]
        else:
            out.append((f"{prefix}{name}", child))
    return out


def randomise(unit: torch.nn.Module, seed: int) -> None:
    """Re-initialise every submodule of ``unit`` that has ``reset_parameters`` (as Quantus does:
    the global RNG seeded with ``seed + 1`` before each), restoring the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        for module in unit.modules():
            if hasattr(module, "reset_parameters"):
                torch.manual_seed(seed + 1)
                module.reset_parameters()


def checkpoints(n_units: int, stages: int | None) -> list[int]:
    """How many units (from the top) are randomised at each stage: every unit above the input
    block one by one (``stages`` None), or ``stages`` evenly spaced counts ending at all of them."""
    top = n_units - 1
    if stages is None or stages >= top:
        return list(range(1, top + 1))
    return [math.ceil(j * top / stages) for j in range(1, stages + 1)]


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation (ties averaged, as scipy) of maps [B,H,W] -> [B].

    Where a map is constant the coefficient is undefined (Quantus reports NaN); here two constant
    maps count as unchanged (1) and one constant map against a varying one as no association
    (0), so a method whose map collapses when the model is randomised is scored, not dropped."""
    from scipy.stats import spearmanr

    out = []
    for x, y in zip(a.cpu().numpy(), b.cpu().numpy()):
        flat_x, flat_y = np.ptp(x) == 0, np.ptp(y) == 0
        if flat_x or flat_y:
            out.append(1.0 if flat_x and flat_y else 0.0)
        else:
            out.append(spearmanr(x.ravel(), y.ravel()).statistic)
    return torch.tensor(out, dtype=torch.float32)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image structural similarity of maps [B,H,W] -> [B] (scikit-image, 7x7 window), each
    pair scaled by the first map's max so the data range is [0, 1]; NaN where that map is 0."""
    from skimage.metrics import structural_similarity

    out = []
    for x, y in zip(a.double().cpu().numpy(), b.double().cpu().numpy()):
        scale = np.abs(x).max()
        out.append(structural_similarity(x / scale, y / max(np.abs(y).max(), 1e-300), data_range=1.0)
                   if scale > 0 else math.nan)
    return torch.tensor(out, dtype=torch.float32)


ORDERS = ("top_down", "bottom_up", "independent")


def randomised_models(model: torch.nn.Module, *, seed: int, stages: int | None,
                      order: str = "top_down") -> Iterator[torch.nn.Module]:
    """Copies of ``model`` with its units above the input block randomised (:func:`randomise`),
    one per stage (:func:`checkpoints`): ``top_down`` cascades from the output down,
    ``bottom_up`` from the unit above the input block up (both end with every unit above the
    input block randomised), ``independent`` randomises one unit per stage on a fresh copy
    (forward order; with ``stages``, the unit at each checkpoint). A cascade yields one copy
    changed in place: use it before asking for the next. ``model`` is not touched."""
    above = units(model)[1:]
    n_units = len(above) + 1
    if order == "independent":
        for count in checkpoints(n_units, stages):
            copied = copy.deepcopy(model)
            randomise(dict(units(copied))[above[count - 1][0]], seed)
            yield copied
        return
    copied = copy.deepcopy(model)
    named = units(copied)[1:]
    sequence = list(reversed(named)) if order == "top_down" else named
    done = 0
    for count in checkpoints(n_units, stages):
        for _, unit in sequence[done:count]:
            randomise(unit, seed)
        done = count
        yield copied


def cascade(model: torch.nn.Module, method: Method, images: torch.Tensor, targets: torch.Tensor, *,
            seed: int, stages: int | None, order: str = "top_down") -> tuple[torch.Tensor, torch.Tensor]:
    """|maps| of ``method`` on copies of ``model`` randomised stage by stage
    (:func:`randomised_models` in ``order``), compared with its |maps| on the intact model:
    (Spearman [B, S+1], SSIM [B, S+1]), column 0 the intact model against itself. Every map is
    computed under the same seeded global RNG, so a method that ignores the model gives the same
    map at every stage. ``model`` is not touched."""
    device = images.device

    def maps(net: torch.nn.Module) -> torch.Tensor:
        with seeded_global_rng(seed, device):
            return method.attribute(net, images, targets).detach().abs()

    original = maps(model)
    rho, sim = [spearman(original, original)], [ssim(original, original)]
    for randomised_model in randomised_models(model, seed=seed, stages=stages, order=order):
        randomised = maps(randomised_model)
        rho.append(spearman(original, randomised))
        sim.append(ssim(original, randomised))
    return torch.stack(rho, 1), torch.stack(sim, 1)


class MPRT(Metric):
    """Model parameter randomisation test, cascading from the top (sanity check).

    Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity checks for saliency maps",
    NeurIPS 2018. The model's units (:func:`units`) are randomised from the output down, on a
    copy; after each stage the method's map is recomputed and compared with its map on the
    intact model (Spearman rank correlation of |maps|, and SSIM). The score is the correlation
    after randomising everything above the input block: lower is better (a map that explains the
    model must change when the model is destroyed; controls that ignore the model score 1).
    Curves ``mprt_spearman``/``mprt_ssim`` hold the cascade (stage 0: the intact model).
    ``order = "bottom_up"`` cascades from the unit above the input block up (the last stage is
    the same model, so the same score); ``"independent"`` randomises one unit per stage on a fresh
    copy (forward order) and scores the mean correlation over the stages.

    Randomisation as Quantus' MPRT (``reset_parameters`` of every layer of a unit, the RNG seeded
    with ``seed + 1`` before each); Quantus cascades layer by layer and compares with the given
    attributions, here the cascade goes by units and both maps are recomputed under one seeded
    RNG (so a seeded or random method is compared with itself). Forward passes on the
    randomised copies are not counted in costs.csv.

    Args:
        stages: the number of cascade stages (evenly spaced, the last one randomising every unit
            above the input block); None: one stage per unit.
        order: "top_down", "bottom_up" or "independent".
        seed: seeds the randomisation and the methods' RNG.
    """

    family = "randomisation"
    higher_is_better = False
    directions = {"ssim": None}
    needs_method = True

    def __init__(self, *, stages: int | None = None, order: str = "top_down", seed: int = 0) -> None:
        if stages is not None:
            check_range("stages", stages, low=1)
        check_choice("order", order, ORDERS)
        self.stages = stages
        self.order = order
        self.seed = seed

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        if method is None:
            raise ParamError("method", "mprt recomputes the method's maps: pass method=")
        rho, sim = cascade(model, method, images, targets, seed=self.seed, stages=self.stages,
                           order=self.order)
        if self.order == "independent" and rho.shape[1] > 1:
            score, score_ssim = rho[:, 1:].mean(1), sim[:, 1:].mean(1)
        else:
            score, score_ssim = rho[:, -1], sim[:, -1]
        return MetricOutput(scores={"mprt": score, "ssim": score_ssim},
                            curves={"spearman": rho, "ssim": sim})
