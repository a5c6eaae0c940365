"""The re-explaining metrics (robustness and randomisation) against Quantus and captum on the same
draws, saliency on tiny models at 16 px, a few images; the differences on purpose, tested."""

import copy

import numpy as np
import pytest
import torch

from xaibench.check.zoo import tiny_net
from xaibench.metrics.efficient_mprt import EfficientMPRT, efficient_mprt
from xaibench.metrics.local_lipschitz import LocalLipschitz, local_lipschitz
from xaibench.metrics.max_sensitivity import MaxSensitivity, sensitivity
from xaibench.metrics.mprt import MPRT, cascade, randomise, spearman
from xaibench.metrics.random_logit import RandomLogit, random_logit, ssim_flat
from xaibench.metrics.relative_input_stability import RelativeInputStability, relative_input_stability
from xaibench.metrics.smooth_mprt import SmoothMPRT, noise_scale, smooth_cascade
from xaibench.params import build
from xaibench.registry import METHODS

from .conftest import tiny_resnet

pytestmark = pytest.mark.usefixtures("one_thread")
RTOL = 1e-4


def data(n=4, size=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen), torch.tensor([0, 1, 1, 0, 1, 0][:n])


def saliency():
    return build(METHODS.get("saliency"), {})


def quantus_explain(method):
    """Quantus' explain_func: the method's maps [B, 1, H, W] as NumPy."""
    def explain(model, inputs, targets, **kwargs):
        maps = method.attribute(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return maps.detach().numpy()[:, None]
    return explain


def replay(noise):
    """A Quantus perturb_func that adds step k's draws of ``noise`` [B, n, 3, H, W] on its k-th call."""
    steps = iter(range(noise.shape[1]))

    def perturb(arr, indices, **kwargs):
        return arr + noise[:, next(steps)].reshape(len(arr), -1).numpy()
    return perturb


def run_quantus(metric, model, images, targets, method):
    explain = quantus_explain(method)
    return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(),
                             a_batch=explain(model, images.numpy(), targets.numpy()), explain_func=explain,
                             device="cpu"), dtype=np.float64)


def uniform(shape, radius, seed=3):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * radius


def test_max_and_avg_sensitivity_equal_quantus_and_captum_on_the_same_noise():
    quantus = pytest.importorskip("quantus")
    from captum.metrics import sensitivity_max

    model, (images, targets), method = tiny_net(), data(), saliency()
    noise = uniform((4, 5, 3, 16, 16), 0.05)
    s = sensitivity(model, method, images, targets, noise, batch_size=7, seed=0)  # uneven chunks
    for cls, ours in ((quantus.MaxSensitivity, s.amax(1)), (quantus.AvgSensitivity, s.mean(1))):
        metric = cls(nr_samples=5, perturb_func=replay(noise), disable_warnings=True)
        theirs = run_quantus(metric, model, images, targets, method)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=RTOL)

    def captum_noise(inputs, radius):  # captum repeats each image n times in a row: [B * n, ...]
        return inputs + noise.flatten(0, 1)

    def captum_explain(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs  # captum passes a tuple at first
        return (method.attribute(model, inputs, target),)  # captum reads a tuple of maps

    theirs = sensitivity_max(captum_explain, images, perturb_func=captum_noise, n_perturb_samples=5,
                             target=targets)
    np.testing.assert_allclose(s.amax(1).numpy(), theirs.double().numpy(), rtol=RTOL)


def test_local_lipschitz_equals_quantus_with_per_image_normalisation():
    quantus = pytest.importorskip("quantus")
    model, (images, targets), method = tiny_net(), data(), saliency()
    noise = 0.1 * torch.randn(4, 5, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    for normalise in (True, False):
        ours = local_lipschitz(model, method, images, targets, noise, normalise=normalise, batch_size=64,
                               seed=0)
        metric = quantus.LocalLipschitzEstimate(nr_samples=5, perturb_func=replay(noise), normalise=normalise,
                                                normalise_func_kwargs={"normalise_axes": (1, 2, 3)},
                                                disable_warnings=True)
        theirs = run_quantus(metric, model, images, targets, method)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=RTOL)


def test_relative_input_stability_equals_quantus_where_no_prediction_changes():
    quantus = pytest.importorskip("quantus")
    model, (images, targets), method = tiny_net(), data(), saliency()
    noise = uniform((4, 5, 3, 16, 16), 0.02)
    ris, kept = relative_input_stability(model, method, images, targets, noise, eps_min=1e-6, batch_size=5,
                                         seed=0)
    assert kept.all()
    metric = quantus.RelativeInputStability(nr_samples=5, perturb_func=replay(noise), disable_warnings=True)
    np.testing.assert_allclose(ris.amax(1).numpy(), run_quantus(metric, model, images, targets, method),
                               rtol=RTOL)


def test_relative_input_stability_leaves_out_copies_that_change_class(monkeypatch):
    """Quantus scores NaN for an image when any copy changes class; here such a copy is left out
    of the maximum."""
    quantus = pytest.importorskip("quantus")
    import xaibench.metrics.relative_input_stability as module

    model, (images, targets), method = tiny_net(), data(), saliency()
    noise = uniform((4, 6, 3, 1, 1), 0.3, seed=5).expand(4, 6, 3, 16, 16)  # colour shifts: some change class
    ris, kept = relative_input_stability(model, method, images, targets, noise, eps_min=1e-6, batch_size=64,
                                         seed=0)
    assert not kept.all() and kept.any(1).all()
    monkeypatch.setattr(module, "uniform_noise", lambda *args: noise)
    out = RelativeInputStability(radius=0.3, n_samples=6).evaluate(model, images, targets, None, None,
                                                                     method=method)
    expected = torch.where(kept, ris, -torch.inf).amax(1)
    np.testing.assert_allclose(out.scores["relative_input_stability"].numpy(), expected.float().numpy())
    metric = quantus.RelativeInputStability(nr_samples=6, perturb_func=replay(noise), disable_warnings=True)
    theirs = run_quantus(metric, model, images, targets, method)
    assert np.isnan(theirs[~kept.all(1).numpy()]).all()


def test_random_logit_equals_quantus_on_the_same_random_classes():
    quantus = pytest.importorskip("quantus")
    model, (images, targets), method = tiny_net(num_classes=5), data(6), saliency()
    np.random.seed(42)  # Quantus' draw: one index among the other classes per image
    index = torch.as_tensor(np.random.randint(0, 4, 6))
    others = index + (index >= targets).long()
    ours = random_logit(model, method, images, targets, others, normalise=True, batch_size=4, seed=0)
    metric = quantus.RandomLogit(num_classes=5, seed=42, normalise_func_kwargs={"normalise_axes": (1, 2, 3)},
                                 disable_warnings=True)
    np.testing.assert_allclose(ours.numpy(), run_quantus(metric, model, images, targets, method), rtol=RTOL)


def test_ssim_of_flat_maps_equals_scikit_image():
    from skimage.metrics import structural_similarity

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 9, 9, generator=gen), torch.rand(3, 9, 9, generator=gen) - 0.3
    for x, y, ours in zip(a.double().numpy(), b.double().numpy(), ssim_flat(a, b)):
        both = np.concatenate([x.ravel(), y.ravel()])
        theirs = structural_similarity(x.ravel(), y.ravel(), data_range=float(both.max() - both.min()))
        assert ours.item() == pytest.approx(theirs, rel=1e-9)
    assert torch.allclose(ssim_flat(a, a), torch.ones(3, dtype=torch.float64))


def test_random_logit_of_a_class_blind_method_is_one():
    out = RandomLogit().evaluate(tiny_net(num_classes=3), *data(4), None, None,
                                 method=build(METHODS.get("sobel"), {}))
    assert torch.allclose(out.scores["random_logit"], torch.ones(4))


@pytest.mark.parametrize("order", ["top_down", "bottom_up", "independent"])
def test_mprt_orders_match_quantus_cascade_by_hand(order):
    """On a model whose units are single layers, Quantus' cascade over the layers above the input
    layer equals ours: top down directly; bottom up and independent over the same layers."""
    quantus = pytest.importorskip("quantus")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).eval()
    images, targets = data(3, size=8)
    method = saliency()
    rho, _ = cascade(model, method, images, targets, seed=7, stages=None, order=order)
    if order == "top_down":
        metric = quantus.MPRT(layer_order="top_down", seed=7, disable_warnings=True)
        layers = [v for k, v in run_quantus_dict(metric, model, images, targets, method).items()
                  if k != "original"][:2]  # 5, 2 (then the input layer 0)
    elif order == "independent":
        metric = quantus.MPRT(layer_order="independent", seed=7, disable_warnings=True)
        scores = run_quantus_dict(metric, model, images, targets, method)
        layers = [scores["2"], scores["5"]]
    else:  # Quantus' bottom up starts with the input layer (ours stays): by hand, 2 then 2 and 5
        layers = []
        copied = copy.deepcopy(model)
        original = method.attribute(model, images, targets).abs()
        for index in (2, 5):
            randomise(copied[index], 7)
            layers.append(spearman(original, method.attribute(copied, images, targets).abs()).numpy())
    np.testing.assert_allclose(rho[:, 1:].numpy(), np.array(layers).T, atol=1e-5)
    out = MPRT(order=order, seed=7).evaluate(model, images, targets, None, None, method=method)
    expected = rho[:, 1:].mean(1) if order == "independent" else rho[:, -1]
    assert torch.equal(out.scores["mprt"], expected)


def run_quantus_dict(metric, model, images, targets, method):
    explain = quantus_explain(method)
    return metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(),
                  a_batch=explain(model, images.numpy(), targets.numpy()), explain_func=explain, device="cpu")


def test_top_down_and_bottom_up_end_on_the_same_model():
    images, targets = data(3)
    down = MPRT(order="top_down").evaluate(tiny_resnet(), images, targets, None, None, method=saliency())
    up = MPRT(order="bottom_up").evaluate(tiny_resnet(), images, targets, None, None, method=saliency())
    assert torch.allclose(down.scores["mprt"], up.scores["mprt"], atol=1e-6)
    assert not torch.allclose(down.curves["spearman"], up.curves["spearman"])


def test_smooth_mprt_equals_quantus_on_the_same_noise(monkeypatch):
    """Quantus draws new noise for every layer; replaying the same draws at every layer (and
    explaining with the method) gives our numbers. Quantus' layers above the input layer,
    independently randomised, against ours."""
    quantus = pytest.importorskip("quantus")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).eval()
    images, targets = data(3, size=8)
    method = saliency()
    k = 4
    noise = torch.randn(3, k, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    scaled = noise_scale(images, 0.1)[:, None, None, None, None] * noise
    rho = smooth_cascade(model, method, images, targets, scaled, seed=7, stages=None, order="independent",
                         batch_size=5)
    calls = iter(range(10 ** 6))
    monkeypatch.setattr(np.random, "randn",
                        lambda *shape: noise[:, next(calls) % k].numpy().astype(np.float64))
    explain = quantus_explain(method)
    monkeypatch.setattr(quantus, "explain", lambda model, inputs, targets, **kw: explain(
        model, inputs.astype(np.float32), targets))
    metric = quantus.SmoothMPRT(layer_order="independent", seed=7, nr_samples=k + 1, disable_warnings=True)
    scores = metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=None,
                    explain_func=explain, device="cpu")
    np.testing.assert_allclose(rho[:, 1:].numpy(), np.array([scores["2"], scores["5"]]).T, atol=1e-5)


def test_efficient_mprt_equals_quantus():
    quantus = pytest.importorskip("quantus")
    model, (images, targets), method = tiny_resnet(), data(4), saliency()
    before, after = efficient_mprt(model, method, images, targets, n_bins=100, seed=3)
    metric = quantus.EfficientMPRT(seed=3, disable_warnings=True)
    theirs = run_quantus(metric, model, images, targets, method)
    np.testing.assert_allclose(((after - before) / before).numpy(), theirs, rtol=RTOL)
    out = EfficientMPRT(seed=3).evaluate(model, images, targets, None, None, method=method)
    np.testing.assert_allclose(out.scores["efficient_mprt"].numpy(), theirs, rtol=RTOL)


@pytest.mark.parametrize("cls", [MaxSensitivity, LocalLipschitz, RelativeInputStability, RandomLogit,
                                 SmoothMPRT])
def test_scores_do_not_depend_on_the_batch_or_the_chunking(cls):
    """Noise comes from each image's contents: an image scores the same alone, in a batch, in any
    chunk size."""
    model, (images, targets) = tiny_net(num_classes=3), data(4)
    whole = cls(batch_size=3).evaluate(model, images, targets, None, None, method=saliency())
    alone = cls(batch_size=64).evaluate(model, images[2:3], targets[2:3], None, None, method=saliency())
    for key, value in alone.scores.items():
        assert value[0].item() == pytest.approx(whole.scores[key][2].item(), rel=1e-5, nan_ok=True)


def test_controls_that_ignore_the_input_are_perfectly_robust():
    model, (images, targets) = tiny_net(), data(4)
    center = build(METHODS.get("center"), {})
    out = MaxSensitivity().evaluate(model, images, targets, None, None, method=center)
    assert torch.equal(out.scores["max_sensitivity"], torch.zeros(4))
    out = LocalLipschitz().evaluate(model, images, targets, None, None, method=center)
    assert torch.equal(out.scores["local_lipschitz"], torch.zeros(4))
