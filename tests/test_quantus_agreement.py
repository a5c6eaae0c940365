"""Number-for-number agreement with Quantus (the reference implementations), on small examples."""

import numpy as np
import pytest
import torch

from xaibench.metrics.perturbation import perturbation_curves
from xaibench.metrics.pointing_game import pointing_game
from xaibench.metrics.relevance_mass import relevance_mass
from xaibench.metrics.relevance_rank import relevance_rank
from xaibench.metrics.sparseness import sparseness

from .conftest import tiny_net

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"disable_warnings": True, "display_progressbar": False}


def data(b, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, h, w, generator=gen), torch.randn(b, h, w, generator=gen),
            torch.randint(0, 2, (b,), generator=gen))


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("size, patch, steps", [((16, 16), 4, 12), ((18, 13), 4, 15), ((12, 12), 3, 16)])
@pytest.mark.parametrize("substrate", ["black", "white", "mean"])
def test_engine_equals_quantus_region_perturbation(order, size, patch, steps, substrate):
    """Quantus returns f(x0) - f(x^(k)) for k = 1..regions_evaluation; same patches (it pads
    sizes the patch does not divide symmetrically, our centred grid), same ranking (summed
    relevance), the same constant substrate; its attribution preprocessing is switched off."""
    model = tiny_net()
    x, a, y = data(5, *size)
    if substrate == "mean":  # quantus takes a per-index array: the model's mean colour, per channel
        colour = model.mean.flatten().numpy()
        baseline = np.tile(np.repeat(colour, patch * patch), (5, 1))
    else:
        baseline = {"black": 0.0, "white": 1.0}[substrate]
    metric = quantus.RegionPerturbation(patch_size=patch, order=order, regions_evaluation=steps,
                                        perturb_baseline=baseline, abs=False, normalise=False, **QUIET)
    drops = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
                              channel_first=True, softmax=True, device="cpu", batch_size=5))
    curves = perturbation_curves(model, x, a, y, patch_size=patch, steps=steps, order=order,
                                 substrate=substrate, chunk_size=16)
    np.testing.assert_allclose((curves[:, :1] - curves[:, 1:]).numpy(), drops, atol=1e-5, rtol=0)


def masks_and_maps(seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 12, 10, generator=gen)  # tie-free
    m = torch.zeros(6, 12, 10, dtype=torch.bool)
    m[0, 2:6, 3:8] = True
    m[1, :, :5] = True
    m[2, 7:, 6:] = True
    m[3, 5, 5] = True
    m[4] = torch.rand(12, 10, generator=gen) > 0.7
    m[5, 1:11, 1:9] = True
    # make a few hits certain: the maximum of image 0 inside its mask, of image 3 on its pixel
    a[0, 3, 4] = 10.0
    a[3, 5, 5] = 10.0
    return a, m


def call(metric, a, m):
    x = torch.rand(a.shape[0], 3, *a.shape[1:], generator=torch.Generator().manual_seed(9)).numpy()
    return np.asarray(metric(model=None, x_batch=x, y_batch=np.zeros(a.shape[0], dtype=int),
                             a_batch=a[:, None].numpy(), s_batch=m[:, None].numpy().astype(float),
                             channel_first=True), dtype=float)


def test_pointing_game_equals_quantus():
    a, m = masks_and_maps()
    ours = pointing_game(a, m)
    theirs = call(quantus.PointingGame(abs=False, normalise=False, **QUIET), a, m)
    np.testing.assert_array_equal(ours.numpy(), theirs)
    assert ours[0] == 1 and ours[3] == 1
    theirs_abs = call(quantus.PointingGame(abs=True, normalise=False, **QUIET), a, m)
    np.testing.assert_array_equal(pointing_game(a, m, absolute=True).numpy(), theirs_abs)


@pytest.mark.parametrize("positive_only", [False, True])
def test_relevance_mass_and_rank_equal_quantus(positive_only):
    a, m = masks_and_maps()
    relevance = a.clamp(min=0) if positive_only else a
    mass = call(quantus.RelevanceMassAccuracy(abs=not positive_only, normalise=False, **QUIET), relevance, m)
    np.testing.assert_allclose(relevance_mass(a, m, positive_only=positive_only).numpy(), mass, atol=1e-6)
    if not positive_only:  # clipping makes ties at 0, which quantus breaks arbitrarily
        rank = call(quantus.RelevanceRankAccuracy(abs=True, normalise=False, **QUIET), relevance, m)
        np.testing.assert_allclose(relevance_rank(a, m, positive_only=False).numpy(), rank, atol=1e-6)


def test_sparseness_equals_quantus():
    a, m = masks_and_maps()
    a[2] = 0.0  # an all-zero map
    a[1] = a[1] * 1e3  # the scale of a map does not matter
    # quantus divides by the max over the whole batch by default; per image it equals ours
    metric = quantus.Sparseness(normalise_func_kwargs={"normalise_axes": [1, 2, 3]}, **QUIET)
    with np.errstate(invalid="ignore"):  # quantus divides the all-zero map by 0
        theirs = call(metric, a, m)
    ours = sparseness(a).numpy()
    keep = np.arange(6) != 2
    np.testing.assert_allclose(ours[keep], theirs[keep], atol=1e-5)
    # an all-zero map: quantus' per-image division is 0/0 (NaN); its default batch-wide division
    # leaves the map at zero, Gini 0, which is ours
    assert ours[2] == pytest.approx(0.0, abs=1e-12)
    batchwise = call(quantus.Sparseness(**QUIET), a[1:3].clone(), m[1:3])
    assert batchwise[1] == pytest.approx(0.0, abs=1e-6)
