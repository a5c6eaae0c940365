"""Each native metric against its reference implementation (Quantus, captum) on identical
settings: the same tiny model, images, maps, masks and perturbation draws; 1e-4 relative per image.
Where a definition differs on purpose, the difference is tested explicitly."""

import numpy as np
import pytest
import torch

from xaibench.metrics.aopc import AOPC
from xaibench.metrics.attribution_localisation import AttributionLocalisation, attribution_localisation
from xaibench.metrics.auc import roc_auc
from xaibench.metrics.average_drop import AverageDrop
from xaibench.metrics.complexity import complexity
from xaibench.metrics.effective_complexity import effective_complexity
from xaibench.metrics.faithfulness_correlation import FaithfulnessCorrelation, faithfulness_correlation
from xaibench.metrics.infidelity import Infidelity, noise_infidelity, patch_infidelity
from xaibench.metrics.irof import IROF, segment_order, superpixels
from xaibench.metrics.monotonicity_correlation import MonotonicityCorrelation, monotonicity_correlation
from xaibench.metrics.perturbation import make_substrate, step_map_curves
from xaibench.metrics.srg import SRG
from xaibench.metrics.top_k_intersection import top_k_intersection

from .conftest import tiny_net

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"disable_warnings": True, "display_progressbar": False}
RTOL = 1e-4


def data(b=4, size=16, seed=0):
    """Smooth images (upsampled 4x4 noise: a few superpixels each), tie-free maps, labels."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, 4, 4, generator=gen)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(b, 3, size, size, generator=gen)).clamp(0, 1)
    a = torch.randn(b, size, size, generator=gen)
    y = torch.randint(0, 2, (b,), generator=gen)
    return x, a, y


def masks(b=4, size=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    m = torch.zeros(b, size, size, dtype=torch.bool)
    for i in range(b):
        top, left = torch.randint(0, size // 2, (2,), generator=gen).tolist()
        m[i, top:top + size // 2, left:left + size // 3 + i] = True
    return m


def run_quantus(metric, model, x, y, a, s=None, **kwargs):
    return np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
                             s_batch=None if s is None else s[:, None].numpy().astype(float),
                             channel_first=True, device="cpu", batch_size=x.shape[0], **kwargs), dtype=float)


def close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours, dtype=float), theirs, rtol=RTOL, atol=1e-7)


# -- faithfulness ----------------------------------------------------------------------------------


def test_srg_is_lerf_minus_morf_area_on_aopcs_own_curves():
    model = tiny_net()
    x, a, y = data(size=16)
    srg = SRG(patch_size=4, steps=8)
    aopc = AOPC(patch_size=4, steps=8)
    assert srg.requests(16, 16) == aopc.requests(16, 16)  # the very same curve keys: computed once
    out, ref = srg.evaluate(model, x, y, a, None), aopc.evaluate(model, x, y, a, None)
    for order in ("morf", "lerf"):
        torch.testing.assert_close(out.curves[order], ref.curves[order], rtol=0, atol=0)
    morf, lerf = ref.curves["morf"].double().numpy(), ref.curves["lerf"].double().numpy()
    by_hand = [np.trapezoid(lerf[i], dx=1 / 8) - np.trapezoid(morf[i], dx=1 / 8) for i in range(4)]
    close(out.scores["srg"], by_hand)
    close(out.scores["abpc"], ref.scores["gap"])  # ABPC = AOPC(MoRF) - AOPC(LeRF)
    # a map and its negation swap MoRF and LeRF: the scores change sign
    flipped = srg.evaluate(model, x, y, -a + 0.0, None)
    close(flipped.scores["srg"], -out.scores["srg"].numpy())


def test_faithfulness_correlation_equals_quantus():
    model = tiny_net()
    x, a, y = data()
    b, runs, size = 4, 12, 40
    n = x[0].numel()
    np.random.seed(3)  # quantus draws its subsets with numpy's global RNG: replay the same draws
    draws = np.stack([np.stack([np.random.choice(n, size, replace=False) for _ in range(b)])
                      for _ in range(runs)])
    subsets = torch.from_numpy(draws).permute(1, 0, 2).long()  # [B, R, S]
    values = make_substrate(model, x, "black")
    ours = faithfulness_correlation(model, x, a, y, subsets, values, chunk_size=16)
    np.random.seed(3)
    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0, abs=False,
                                             normalise=False, return_aggregate=False, **QUIET)
    close(ours, run_quantus(metric, model, x, y, a, softmax=True))
    # the plugin draws its own subsets from its seed, reproducibly, never from the global RNG
    plugin = FaithfulnessCorrelation(runs=runs, subset_size=size, chunk_size=16)
    first = plugin.evaluate(model, x, y, a, None).scores["faithfulness_correlation"]
    again = plugin.evaluate(model, x, y, a, None).scores["faithfulness_correlation"]
    torch.testing.assert_close(first, again)
    assert torch.isfinite(first).all()


def test_monotonicity_correlation_equals_quantus():
    model = tiny_net()
    x, a, y = data(size=24)  # quantus needs H * W divisible by features_in_step = 3 * pixels_per_step
    b, per_step, samples = 4, 12, 3
    steps = 24 * 24 // per_step
    np.random.seed(5)  # quantus' "uniform" baseline: one gray level per image and call
    fills = torch.from_numpy(np.random.uniform(size=(steps, samples, b))).permute(2, 0, 1)
    ours = monotonicity_correlation(model, x, a, y, fills, pixels_per_step=per_step, chunk_size=64)
    np.random.seed(5)
    metric = quantus.MonotonicityCorrelation(nr_samples=samples, features_in_step=3 * per_step,
                                             perturb_baseline="uniform", abs=False, normalise=False, **QUIET)
    close(ours, run_quantus(metric, model, x, y, a, softmax=True))
    out = MonotonicityCorrelation(pixels_per_step=32, samples=2).evaluate(model, x, y, a, None)
    assert torch.isfinite(out.scores["monotonicity_correlation"]).all()


@pytest.mark.parametrize("normalise", [False, True])
def test_infidelity_noise_equals_captum(normalise):
    from captum.metrics import infidelity

    model = tiny_net()
    x, a, y = data()
    samples = 6
    noise = 0.1 * torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(2))
    ours = noise_infidelity(model, x, a, y, noise, normalise=normalise, chunk_size=8)

    def perturb(inputs):  # captum repeats each input n_perturb_samples times, image-major
        pert = noise.transpose(0, 1).reshape(-1, *x.shape[1:])
        return pert, inputs - pert

    with torch.no_grad():
        theirs = infidelity(lambda inp: model(inp).softmax(1), perturb, x,
                            a[:, None].expand_as(x).contiguous(), target=y, n_perturb_samples=samples,
                            normalize=normalise)
    close(ours, theirs.double().numpy())
    plugin = Infidelity(samples=samples, normalise=normalise, chunk_size=8)
    assert torch.isfinite(plugin.evaluate(model, x, y, a, None).scores["infidelity"]).all()


def test_infidelity_patches_equals_quantus():
    model = tiny_net()
    x, a, y = data()
    ours = patch_infidelity(model, x, a, y, make_substrate(model, x, "black"), patch_size=4, chunk_size=32)
    metric = quantus.Infidelity(perturb_patch_sizes=[4], n_perturb_samples=1, perturb_baseline=0.0, abs=False,
                                normalise=False, **QUIET)
    close(ours, run_quantus(metric, model, x, y, a, softmax=True))
    plugin = Infidelity(perturbation="patches", patch_size=4, chunk_size=32)
    close(plugin.evaluate(model, x, y, a, None).scores["infidelity"], ours.numpy())


def test_irof_equals_quantus_and_its_batch_padding_differs(monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)  # quantus 0.6 calls numpy < 2's name
    model = tiny_net()
    x, a, y = data(b=5, size=24)
    segments = superpixels(x)
    from quantus.helpers.utils import get_superpixel_segments

    for xi, si in zip(x, segments):  # the same SLIC call as quantus
        np.testing.assert_array_equal(si.numpy(), get_superpixel_segments(
            np.moveaxis(xi.numpy(), 0, -1).astype("double"), "slic"))
    out = IROF(substrate="black", chunk_size=64).evaluate(model, x, y, a, None)
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    def by_mask(arr, mask, **kwargs):  # quantus 0.6 passes a 1-channel mask for 3-channel images
        return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)

    metric = quantus.IROF(perturb_func=by_mask, perturb_baseline=0.0, abs=False, normalise=False,
                          return_aggregate=False, **QUIET)
    theirs = run_quantus(metric, model, x, y, a, softmax=True)
    when, counts = segment_order(a, segments)
    black = make_substrate(model, x, "black")
    curves = step_map_curves(model, x, when, y, steps=int(counts.max()), values=black)
    last = (curves[torch.arange(5), counts] / curves[:, 0]).double().numpy()
    full = (counts == counts.max()).numpy()
    assert full.any()
    ours = out.scores["irof"].double().numpy()
    close(ours[full], theirs[full])  # images with the batch's largest segment count: equal
    # the others: quantus pads their curves with zeros to the batch's longest: r_S / 2 more area under
    close(ours[~full] - last[~full] / 2, theirs[~full])
    close(out.scores["normalised"], ours / counts.double().numpy())


def test_average_drop_by_hand():
    model = tiny_net()
    x, a, y = data()
    a[1] = 0.0  # a constant map scales to 0: the image goes black
    out = AverageDrop().evaluate(model, x, y, a, None)
    an = a.double().numpy().reshape(4, -1)
    span = an.max(1, keepdims=True) - an.min(1, keepdims=True)
    z = np.where(span > 0, (an - an.min(1, keepdims=True)) / np.where(span > 0, span, 1), 0)
    z = z.reshape(4, 16, 16)
    with torch.no_grad():
        clean = model(x).softmax(1)[torch.arange(4), y].double().numpy()
        seen = model(x * torch.from_numpy(z).float()[:, None]).softmax(1)[torch.arange(4), y].double().numpy()
    close(out.scores["average_drop"], np.maximum(clean - seen, 0) / clean)
    np.testing.assert_array_equal(out.scores["increase_in_confidence"].numpy(), (seen > clean).astype(float))
    with torch.no_grad():
        black = model(torch.zeros_like(x[1:2])).softmax(1)[0, y[1]].item()
    expected = max(clean[1] - black, 0) / clean[1]
    assert out.scores["average_drop"][1].item() == pytest.approx(expected, rel=1e-4)


# -- complexity ------------------------------------------------------------------------------------


def test_complexity_equals_quantus():
    _, a, _ = data()
    a[2] *= 1e3  # scale does not matter
    theirs = run_quantus(quantus.Complexity(abs=True, normalise=False, **QUIET), None, *data()[::2], a)
    close(complexity(a), theirs)
    zero = complexity(torch.zeros(1, 16, 16))  # quantus: 0/0; here the uniform map's entropy, log n
    assert zero.item() == pytest.approx(np.log(256), rel=1e-6)
    assert complexity(torch.ones(1, 16, 16)).item() == pytest.approx(np.log(256), rel=1e-6)


def test_effective_complexity_equals_quantus_per_image():
    x, a, y = data()
    a[1] *= 100.0  # quantus' default divides by the batch's maximum; per image it equals ours
    metric = quantus.EffectiveComplexity(eps=0.3, abs=True, normalise=True,
                                         normalise_func_kwargs={"normalise_axes": [1, 2, 3]}, **QUIET)
    theirs = run_quantus(metric, None, x, y, a)
    ours = effective_complexity(a, eps=0.3)
    close(ours, theirs)
    batchwise = run_quantus(quantus.EffectiveComplexity(eps=0.3, **QUIET), None, x, y, a)
    assert batchwise[0] < ours[0].item()  # the batch's maximum (image 1's) shrinks image 0's map


# -- localisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_equals_quantus(concept_influence):
    x, a, y = data()
    m = masks()
    metric = quantus.TopKIntersection(k=30, concept_influence=concept_influence, abs=False, normalise=False,
                                      **QUIET)
    ours = top_k_intersection(a, m, k=30, concept_influence=concept_influence)
    close(ours, run_quantus(metric, None, x, y, a, m))
    metric = quantus.TopKIntersection(k=30, abs=True, normalise=False, **QUIET)
    close(top_k_intersection(a, m, k=30, absolute=True), run_quantus(metric, None, x, y, a, m))


def test_auc_equals_quantus_ties_included():
    x, a, y = data()
    m = masks()
    a[2] = torch.round(a[2] * 2) / 2  # many ties: they count half, as in scikit-learn
    a[3] = 0.0
    theirs = run_quantus(quantus.AUC(abs=False, normalise=False, **QUIET), None, x, y, a, m)
    close(roc_auc(a, m), theirs)
    assert roc_auc(a[3:], m[3:]).item() == pytest.approx(0.5)
    close(roc_auc(a, m, absolute=True), run_quantus(quantus.AUC(abs=True, normalise=False, **QUIET),
                                                   None, x, y, a, m))


def test_attribution_localisation_equals_quantus_and_weights_as_the_paper():
    x, a, y = data()
    m = masks()
    metric = quantus.AttributionLocalisation(abs=True, normalise=False, **QUIET)
    theirs = run_quantus(metric, None, x, y, a, m)
    close(attribution_localisation(a, m), theirs)
    positive = quantus.AttributionLocalisation(abs=False, normalise=False, positive_attributions=True,
                                               **QUIET)
    close(attribution_localisation(a, m, positive_only=True), run_quantus(positive, None, x, y, a, m))
    # weighted: the paper's mu * n / |m| here; quantus multiplies by |m| / x_batch[2:].size instead
    area = m.flatten(1).sum(1).double().numpy()
    plugin = AttributionLocalisation(weighted=True)
    close(plugin.evaluate(None, x, y, a, m).scores["attribution_localisation"], theirs * 256 / area)
    weighted = run_quantus(quantus.AttributionLocalisation(abs=True, normalise=False, weighted=True, **QUIET),
                           None, x, y, a, m)
    close(weighted, theirs * area / x[2:].numel())


def test_srg_shares_aopcs_curves_in_a_plan(tmp_path):
    """Planned next to an aopc with the same settings, srg asks for no curve of its own."""
    import json

    from xaibench import config
    from xaibench.run.plan import describe, plan

    path = tmp_path / "srg.toml"
    path.write_text('[run]\nseed = 0\ndevice = "cpu"\n\n[dataset]\nname = "synthetic"\nimage_size = 32\n'
                    'n_train = 8\nn_val = 4\nn_test = 8\nradius = [3, 6]\n\n'
                    '[models.resnet18]\narch = "resnet18"\nepochs = 1\n\n'
                    '[methods.gradcam]\n\n[metrics.aopc]\npatch_size = 16\nsteps = 2\n\n'
                    '[metrics.srg]\npatch_size = 16\nsteps = 2\n')
    cfg = config.load(str(path), [f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    lines = describe(plan(cfg))
    assert "compute  score    resnet18/gradcam/srg (curves shared with resnet18/gradcam/aopc)" in lines
