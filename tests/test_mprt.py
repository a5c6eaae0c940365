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


# The top-down cascade's numbers, pinned (saliency on the tiny ResNet, seed 5): the default order
# must keep giving exactly these.
PINNED_SPEARMAN = [
    [1.0, 0.45516422390937805, 0.4179202914237976, 0.6126709580421448, 0.5307579040527344,
     0.5607776641845703, 0.5661042332649231],
    [1.0, 0.44376787543296814, 0.4597197473049164, 0.4625815451145172, 0.4667608439922333,
     0.3971904218196869, 0.4247489273548126],
    [1.0, 0.5545433759689331, 0.39237526059150696, 0.582489550113678, 0.5059224367141724,
     0.4651150107383728, 0.46084773540496826]]
PINNED_SSIM = [
    [1.0, 0.22446686029434204, 0.17313875257968903, 0.17375540733337402, 0.20385363698005676,
     0.18281209468841553, 0.12635262310504913],
    [1.0, 0.2437751293182373, 0.22330264747142792, 0.15077811479568481, 0.08300172537565231,
     0.07606654614210129, 0.12234348058700562],
    [1.0, 0.16084879636764526, 0.15761809051036835, 0.16681861877441406, 0.10499297082424164,
     0.11106178164482117, 0.047514062374830246]]


@pytest.mark.parametrize("stages", [None, 2])
def test_the_default_top_down_cascade_keeps_its_pinned_numbers(stages, one_thread):
    gen = torch.Generator().manual_seed(3)
    images, targets = torch.rand(3, 3, 16, 16, generator=gen), torch.tensor([0, 1, 1])
    out = MPRT(stages=stages, seed=5).evaluate(tiny_resnet(), images, targets, None, None,
                                               method=build(METHODS.get("saliency"), {}))
    cols = slice(None) if stages is None else [0, 3, 6]
    assert out.curves["spearman"].tolist() == np.array(PINNED_SPEARMAN, dtype=np.float32)[:, cols].tolist()
    assert out.curves["ssim"].tolist() == np.array(PINNED_SSIM, dtype=np.float32)[:, cols].tolist()
    assert out.scores["mprt"].tolist() == np.array(PINNED_SPEARMAN, dtype=np.float32)[:, -1].tolist()
