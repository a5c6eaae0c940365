"""The cascading model parameter randomisation test: by hand on a tiny model, against Quantus'
MPRT on the same randomisation, controls at correlation 1, the model left untouched."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from xaibench.metrics.mprt import MPRT, cascade, checkpoints, randomise, units
from xaibench.params import build
from xaibench.registry import METHODS

from .conftest import tiny_resnet


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).eval()


def data(n=3):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 8, 8, generator=gen), torch.tensor([0, 1, 1][:n])


def gradient_map(model, images, targets):
    x = images.clone().requires_grad_(True)
    model(x).gather(1, targets[:, None]).sum().backward()
    return x.grad.abs().amax(1)  # captum Saliency(abs=True), channels by max


def test_units_and_checkpoints():
    assert [n for n, _ in units(tiny_model())] == ["0", "2", "5"]
    names = [n for n, _ in units(tiny_resnet())]
    assert names[0].endswith("conv1") and names[-1].endswith("fc")
    assert any(n.endswith("layer1.0") for n in names)  # Sequential stages are opened
    assert checkpoints(5, None) == [1, 2, 3, 4]
    assert checkpoints(11, 3) == [4, 7, 10]  # the last stage: every unit above the input block


def test_cascade_by_hand_on_a_tiny_model():
    model = tiny_model()
    images, targets = data()
    saliency = build(METHODS.get("saliency"), {})
    rho, _ = cascade(model, saliency, images, targets, seed=7, stages=None)
    original = gradient_map(model, images, targets)
    copied = tiny_model()
    expected = [np.ones(3)]
    for layer in (copied[5], copied[2]):  # top down, the input block (copied[0]) stays
        torch.manual_seed(8)
        layer.reset_parameters()
        after = gradient_map(copied, images, targets)
        expected.append([spearmanr(a.ravel(), b.ravel()).statistic
                         for a, b in zip(original.numpy(), after.numpy())])
    np.testing.assert_allclose(rho.numpy(), np.array(expected).T, atol=1e-6)


def test_agrees_with_quantus_mprt_on_the_same_randomisation():
    quantus = pytest.importorskip("quantus")
    model = tiny_model()
    images, targets = data()
    saliency = build(METHODS.get("saliency"), {})

    def explain(model, inputs, targets, **kwargs):
        maps = saliency.attribute(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return maps.detach().numpy()[:, None]

    a_batch = explain(model, images.numpy(), targets.numpy())
    metric = quantus.MPRT(layer_order="top_down", seed=7, disable_warnings=True, display_progressbar=False)
    scores = metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=a_batch,
                    explain_func=explain, device="cpu")
    layers = [v for k, v in scores.items() if k != "original"]  # top down: 5, 2, 0
    rho, _ = cascade(model, saliency, images, targets, seed=7, stages=None)
    np.testing.assert_allclose(rho[:, 1:].numpy(), np.array(layers[:2]).T, atol=1e-5)


@pytest.mark.parametrize("control", ["random", "sobel", "center"])
def test_controls_that_ignore_the_model_keep_correlation_one(control):
    images, targets = data()
    out = MPRT(stages=2).evaluate(tiny_resnet(), torch.rand(3, 3, 32, 32), targets, None, None,
                                  method=build(METHODS.get(control), {}))
    assert torch.allclose(out.curves["spearman"], torch.ones(3, 3))
    assert torch.allclose(out.scores["mprt"], torch.ones(3))


def test_the_model_is_bitwise_unchanged_and_the_rng_untouched():
    model = tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, targets = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    state = torch.get_rng_state()
    out = MPRT(stages=3).evaluate(model, images, targets, None, None,
                                  method=build(METHODS.get("gradcam"), {}))
    assert out.curves["spearman"].shape == (2, 4) and out.curves["ssim"].shape == (2, 4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), state)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert (out.scores["mprt"] < 0.99).all()  # Grad-CAM changes when the network is destroyed


def test_randomise_restores_the_global_rng():
    layer = nn.Linear(3, 2)
    state = torch.get_rng_state()
    randomise(layer, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
