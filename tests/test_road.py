"""ROAD: the batched noisy linear imputation against pytorch-grad-cam's per-image SciPy solve, and
the ROAD curves against a plain per-image, per-percentage loop over that reference."""

import math

import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from xaibench.metrics import road
from xaibench.metrics.perturbation import class_scores, perturbation_curves
from xaibench.metrics.road import ROAD, noisy_linear_impute, removal_masks
from xaibench.params import build
from xaibench.plugins import ParamError
from xaibench.registry import METRICS

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_impute(images, removed):
    """pytorch-grad-cam's NoisyLinearImputer (the authors' code), noise 0, one image at a time.
    Its mask is 1 for known pixels, [H, W] (a 3-row mask would hit its luminance branch: no H = 3)."""
    imputer = NoisyLinearImputer(noise=0.0)
    return torch.stack([imputer(img, (~rem).float()) for img, rem in zip(images, removed)])


def masks_for(h, w, gen):
    """Random sparse and dense removals, the image border, all but a central disk (one large
    region touching every side), a solid block in a corner, and all but one pixel."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    border = torch.zeros(h, w, dtype=torch.bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    corner = torch.zeros(h, w, dtype=torch.bool)
    corner[: h * 2 // 3, : w * 2 // 3] = True
    one_left = torch.ones(h, w, dtype=torch.bool)
    one_left[h - 1, w // 2] = False
    dense = torch.rand(h, w, generator=gen) < 0.9
    dense[h // 2, 0] = False  # keep one pixel on tiny images
    return torch.stack([
        torch.rand(h, w, generator=gen) < 0.3,
        dense,
        border,
        (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 > (min(h, w) / 5) ** 2,
        corner,
        one_left,
    ])


@pytest.mark.parametrize("size", [(4, 4), (9, 14), (24, 17), (40, 40)])
@pytest.mark.parametrize("jacobi, large", [(0, 2.0), (5, 2.0), (50, 0.05), (10**6, 2.0)],
                         ids=["multigrid", "switch-after-5", "default", "jacobi-only"])
def test_imputation_equals_reference_on_every_imputed_pixel(size, jacobi, large, monkeypatch):
    """Both solvers: the multigrid-preconditioned CG from the start, after 5 Jacobi-preconditioned
    iterations, the default choice, and the Jacobi-preconditioned CG alone."""
    monkeypatch.setattr(road, "JACOBI_ITERATIONS", jacobi)
    monkeypatch.setattr(road, "LARGE_REGION", large)
    gen = torch.Generator().manual_seed(sum(size))
    removed = masks_for(*size, gen)
    images = torch.rand(removed.shape[0], 3, *size, generator=gen)
    got = noisy_linear_impute(images, removed)
    ref = reference_impute(images, removed)
    assert got.dtype == images.dtype and got.shape == images.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    assert (got - ref).abs().max() < 1e-5
    keep = ~removed[:, None].expand_as(images)
    assert torch.equal(got[keep], images[keep]), "known pixels changed"


@pytest.mark.parametrize("h, w", [(7, 10), (8, 8), (9, 5), (2, 3)])
def test_multigrid_restriction_is_the_transpose_of_prolongation(h, w):
    """What makes the V-cycle symmetric, hence a valid conjugate-gradient preconditioner."""
    gen = torch.Generator().manual_seed(h * w)
    coarse = torch.randn(2, 3, -(-h // 2), -(-w // 2), generator=gen, dtype=torch.float64)
    fine = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    lhs = (road._prolong(coarse, h, w) * fine).sum()
    rhs = (coarse * road._restrict(fine, *coarse.shape[-2:])).sum()
    assert abs(float(lhs - rhs)) < 1e-12
    assert torch.allclose(road._prolong(torch.ones(1, 1, -(-h // 2), -(-w // 2), dtype=torch.float64), h, w),
                          torch.ones(1, 1, h, w, dtype=torch.float64))  # constants interpolate exactly


def test_imputation_by_hand():
    # one removed pixel: the weighted mean of its neighbours, renormalised at the border
    img = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()
    removed = torch.zeros(1, 4, 4, dtype=torch.bool)
    removed[0, 1, 1] = removed[0, 0, 3] = True
    out = noisy_linear_impute(img, removed)
    v = img[0, 0]
    inner = (v[0, 1] + v[1, 0] + v[1, 2] + v[2, 1]) / 6 + (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]) / 12
    corner = ((v[0, 2] + v[1, 3]) / 6 + v[1, 2] / 12) / (2 / 6 + 1 / 12)
    torch.testing.assert_close(out[0, :, 1, 1], inner.expand(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, :, 0, 3], corner.expand(3), atol=1e-6, rtol=0)


def test_noise_is_seeded_and_only_on_removed_pixels():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 20, 20, generator=gen)
    removed = torch.rand(3, 20, 20, generator=gen) < 0.5
    clean = noisy_linear_impute(images, removed)
    a = noisy_linear_impute(images, removed, noise=0.05, generator=torch.Generator().manual_seed(7))
    b = noisy_linear_impute(images, removed, noise=0.05, generator=torch.Generator().manual_seed(7))
    c = noisy_linear_impute(images, removed, noise=0.05, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    keep = ~removed[:, None].expand_as(images)
    assert torch.equal(a[keep], images[keep])
    eps = torch.randn(images.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(a[~keep], (clean.double() + 0.05 * eps)[~keep].float(), atol=1e-6, rtol=0)
    rng = torch.get_rng_state()
    noisy_linear_impute(images, removed, noise=0.05)  # default generator: seeded, not the global RNG
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("device", DEVICES)
def test_imputation_on_device_matches_cpu(device):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 24, 24, generator=gen)
    removed = masks_for(24, 24, gen)[:4]
    cpu = noisy_linear_impute(images, removed, noise=0.01, generator=torch.Generator().manual_seed(1))
    dev = noisy_linear_impute(images.to(device), removed.to(device), noise=0.01,
                              generator=torch.Generator().manual_seed(1))
    assert dev.device.type == device
    torch.testing.assert_close(dev.cpu(), cpu, atol=1e-6, rtol=0)


def test_imputation_refuses_bad_input():
    images = torch.rand(2, 3, 5, 5)
    with pytest.raises(ValueError, match="every pixel of an image is removed"):
        noisy_linear_impute(images, torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        noisy_linear_impute(images, torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="expected images"):
        noisy_linear_impute(images, torch.zeros(2, 4, 5, dtype=torch.bool))
    none = noisy_linear_impute(images, torch.zeros(2, 5, 5, dtype=torch.bool), noise=0.1)
    assert torch.equal(none, images)


def test_removal_masks_rank_once_with_ties_by_index():
    a = torch.tensor([[[3.0, 1.0, 2.0], [1.0, 5.0, 0.0]]])  # 6 pixels; 1.0 twice
    morf = removal_masks(a, (0.0, 0.34, 0.5, 0.67), order="morf")
    lerf = removal_masks(a, (0.5,), order="lerf")
    assert morf.shape == (4, 1, 2, 3)
    assert morf.flatten(1).sum(1).tolist() == [0, 2, 3, 4]  # floor(p * 6)
    assert morf[1, 0].flatten().tolist() == [True, False, False, False, True, False]
    assert morf[2, 0].flatten().tolist() == [True, False, True, False, True, False]
    assert morf[3, 0].flatten().tolist() == [True, True, True, False, True, False]  # tie: index 1 first
    assert lerf[0, 0].flatten().tolist() == [False, True, False, True, False, True]


def reference_road(model, images, attributions, targets, percentages):
    """One image, one order and one percentage at a time: sort the pixels with sorted(), impute
    with pytorch-grad-cam, run the model on the single image."""
    b, _, h, w = images.shape
    curves = {"morf": [], "lerf": []}
    for i in range(b):
        values = attributions[i].flatten().tolist()
        for order, sign in (("morf", -1), ("lerf", 1)):
            ranked = sorted(range(h * w), key=lambda j: (sign * values[j], j))
            with torch.no_grad():
                curve = [model(images[i:i + 1]).softmax(1)[0, targets[i]].item()]
            for p in percentages:
                removed = torch.zeros(h * w, dtype=torch.bool)
                removed[ranked[:int(p * h * w)]] = True
                x = reference_impute(images[i:i + 1], removed.view(1, h, w))
                with torch.no_grad():
                    curve.append(model(x).softmax(1)[0, targets[i]].item())
            curves[order].append(curve)
    return {k: torch.tensor(v) for k, v in curves.items()}


def test_road_curves_equal_per_image_loop_over_reference_imputation():
    gen = torch.Generator().manual_seed(0)
    model = tiny_net(num_classes=3)
    images = torch.rand(3, 3, 12, 10, generator=gen)
    attributions = torch.randn(3, 12, 10, generator=gen)
    targets = torch.tensor([2, 0, 1])
    percentages = (0.1, 0.25, 0.5, 0.9)
    metric = ROAD(percentages=percentages, noise=0.0, chunk_size=4)
    out = metric.evaluate(model, images, targets, attributions, None)
    ref = reference_road(model, images, attributions, targets, percentages)
    for order in ("morf", "lerf"):
        assert out.curves[order].shape == (3, len(percentages) + 1)
        torch.testing.assert_close(out.curves[order], ref[order], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.scores["road"], ref["morf"][:, 1:].mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.scores["lerf"], ref["lerf"][:, 1:].mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.scores["gap"], out.scores["lerf"] - out.scores["road"])


def test_road_noise_seeded_scores_and_lerf_switch():
    gen = torch.Generator().manual_seed(1)
    model = tiny_net()
    images = torch.rand(2, 3, 16, 16, generator=gen)
    attributions = torch.rand(2, 16, 16, generator=gen)
    targets = torch.tensor([0, 1])

    def run(**options):
        return ROAD(percentages=(0.3, 0.6), noise=0.2, **options).evaluate(model, images, targets,
                                                                           attributions, None)

    a, b, c = run(), run(), run(seed=1)
    assert torch.equal(a.curves["morf"], b.curves["morf"])
    assert not torch.equal(a.curves["morf"], c.curves["morf"])
    # the noise does not depend on the chunks (the solve may take another path: same numbers to 1e-5)
    torch.testing.assert_close(run(chunk_size=1).curves["morf"], a.curves["morf"], atol=1e-5, rtol=0)
    only = run(lerf=False)
    assert set(only.scores) == {"road"} and set(only.curves) == {"morf"}
    with torch.no_grad():
        clean = model(images).softmax(1)[torch.arange(2), targets]
    torch.testing.assert_close(a.curves["morf"][:, 0], clean)
    pred = ROAD(percentages=(0.3,), score="predicted").evaluate(model, images, targets, attributions, None)
    with torch.no_grad():
        torch.testing.assert_close(pred.curves["morf"][:, 0], model(images).softmax(1).amax(1))


def test_class_scores_equal_the_engines_clean_column():
    gen = torch.Generator().manual_seed(2)
    model = tiny_net(num_classes=3)
    images = torch.rand(5, 3, 16, 16, generator=gen)
    targets = torch.tensor([0, 1, 2, 1, 0])
    for score in ("softmax", "logit"):
        engine = perturbation_curves(model, images, torch.rand(5, 16, 16, generator=gen), targets,
                                     patch_size=4, steps=0, score=score)
        torch.testing.assert_close(class_scores(model, images, targets, score=score, chunk_size=2),
                                   engine[:, 0], atol=1e-6, rtol=0)


def test_road_registered_with_directions_and_parameter_checks():
    cls = METRICS.get("road")
    assert cls is ROAD and cls.higher_is_better is False
    assert cls.direction("road") is False and cls.direction("lerf") is True and cls.direction("gap") is True
    metric = build(cls, {"percentages": [0.2, 0.4]})
    assert metric.percentages == (0.2, 0.4)
    for bad in ([], [0.5, 1.0], [-0.1]):
        with pytest.raises(ParamError, match="percentages"):
            build(cls, {"percentages": bad})
    with pytest.raises(ParamError, match="noise"):
        build(cls, {"noise": -1.0})
    assert math.isclose(sum(ROAD().percentages), 4.5)
