"""Methods checked against independent references: direct captum/zennit calls, the axioms they
satisfy (IG completeness, Deep Taylor conservation) and hand-computed values."""

import math

import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus, NameLayerMapComposite, layer_map_base
from zennit.rules import ZBox, ZPlus
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution

from xaibench.check.guards import MethodError
from xaibench.check.guards import check_maps as check_attributions
from xaibench.config import RunConfig
from xaibench.datasets.splits import Split
from xaibench.methods.center import Center
from xaibench.methods.deep_taylor import DeepTaylor, input_layer, pixel_bounds
from xaibench.methods.gradcam import GradCAM
from xaibench.methods.integrated_gradients import IntegratedGradients as IGMethod
from xaibench.methods.lrp_epsilon_plus import LRPEpsilonPlus
from xaibench.methods.occlusion import Occlusion, windows_per_image
from xaibench.methods.random import RandomMap
from xaibench.methods.rise import RISE, rise_grids, rise_masks
from xaibench.methods.smoothgrad import SmoothGrad
from xaibench.methods.sobel import Sobel
from xaibench.models.classifier import Classifier
from xaibench.plugins import Method, ParamError
from xaibench.run.execute import explain_shard

from .conftest import tiny_joint, tiny_net, tiny_resnet

pytestmark = pytest.mark.usefixtures("one_thread")


def bias_free_relu_net(seed: int = 0) -> Classifier:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return Classifier(net, cam_layer="net.2").eval()  # ImageNet mean/std in front


# -- captum cross-checks ------------------------------------------------------------------------


def test_gradcam_equals_direct_captum(images, labels):
    model = tiny_net()
    ours = GradCAM().attribute(model, images, labels)
    cam = LayerGradCam(model, model.net[2]).attribute(images, target=labels, relu_attributions=True)
    ref = LayerAttribution.interpolate(cam, (16, 16), interpolate_mode="bilinear").sum(1)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_integrated_gradients_equals_direct_captum(images, labels, baseline):
    model = tiny_net()
    ours = IGMethod(n_steps=20, baseline=baseline, internal_batch_size=40).attribute(model, images, labels)
    base = torch.zeros_like(images) if baseline == "black" else \
        images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    ref = IntegratedGradients(model).attribute(images, baselines=base, target=labels, n_steps=20,
                                               internal_batch_size=40).sum(1)
    torch.testing.assert_close(ours, ref)


def test_integrated_gradients_completeness(images, labels):
    model = tiny_net()
    attr = IGMethod(n_steps=128).attribute(model, images, labels)
    with torch.no_grad():
        f_x = model(images).gather(1, labels[:, None])[:, 0]
        f_0 = model(torch.zeros_like(images)).gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(attr.sum((1, 2)), f_x - f_0, atol=2e-3, rtol=1e-2)


def test_integrated_gradients_memory_bound_does_not_change_result(images, labels):
    model = tiny_net()
    a = IGMethod(n_steps=16, internal_batch_size=9).attribute(model, images, labels)
    b = IGMethod(n_steps=16, internal_batch_size=128).attribute(model, images, labels)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# -- zennit: Deep Taylor and LRP ----------------------------------------------------------------


def test_deep_taylor_conserves_the_logit_on_a_bias_free_relu_net(images):
    model = bias_free_relu_net()
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    relevance = DeepTaylor().attribute(model, images, targets)
    with torch.no_grad():
        logits = model(images).gather(1, targets[:, None])[:, 0]
    assert (logits > 0).any() and (logits < 0).any()  # both signs are conserved
    torch.testing.assert_close(relevance.sum((1, 2)), logits, atol=1e-4, rtol=1e-4)


def test_deep_taylor_box_is_the_pixel_range_seen_through_the_normalisation():
    model = tiny_net()
    low, high = pixel_bounds(model)
    torch.testing.assert_close((low * model.std + model.mean).flatten(), torch.zeros(3))
    torch.testing.assert_close((high * model.std + model.mean).flatten(), torch.ones(3))
    assert input_layer(model) == "net.0"
    assert input_layer(tiny_resnet()) == "net.conv1"
    assert input_layer(tiny_joint()) == "net.features.0.inner.0"  # the gated classifier, not the explainer


def zennit_reference(model, images, targets, composite):
    with Gradient(model, composite) as attributor:
        _, grad = attributor(images.clone().requires_grad_(),
                             lambda out: out * nn.functional.one_hot(targets, out.shape[1]))
    return (grad * model.std).sum(1)


def test_deep_taylor_equals_direct_zennit_call(images, labels):
    model = tiny_resnet()
    low = (0 - model.mean) / model.std
    high = (1 - model.mean) / model.std
    composite = NameLayerMapComposite(
        name_map=[(("net.conv1",), ZBox(low, high))],
        layer_map=layer_map_base() + [(Convolution, ZPlus()), (nn.Linear, ZPlus())],
        canonizers=[ResNetCanonizer()])
    ref = zennit_reference(model, images[:4], labels[:4], composite)
    ours = DeepTaylor().attribute(model, images[:4], labels[:4])
    torch.testing.assert_close(ours, ref)


def test_lrp_epsilon_plus_equals_direct_zennit_call(images, labels):
    model = tiny_resnet()
    composite = EpsilonPlus(epsilon=0.1, canonizers=[ResNetCanonizer()])
    ref = zennit_reference(model, images[:4], labels[:4], composite)
    ours = LRPEpsilonPlus(epsilon=0.1).attribute(model, images[:4], labels[:4])
    torch.testing.assert_close(ours, ref)


def test_canonizers_matter_on_a_resnet(images, labels):
    """Without merging batch norms the maps differ: the canonizers are really applied."""
    model = tiny_resnet()
    low, high = pixel_bounds(model)
    bare = NameLayerMapComposite(
        name_map=[(("net.conv1",), ZBox(low, high))],
        layer_map=layer_map_base() + [(Convolution, ZPlus()), (nn.Linear, ZPlus())])
    ours = DeepTaylor().attribute(model, images[:2], labels[:2])
    assert not torch.allclose(ours, zennit_reference(model, images[:2], labels[:2], bare))


@pytest.mark.parametrize("cls", [DeepTaylor, LRPEpsilonPlus])
def test_lrp_treats_joint_gates_as_constants(cls, images, labels):
    model = tiny_joint()
    entries = []
    original = model.constant_gates

    def spy():
        entries.append(1)
        return original()

    model.constant_gates = spy
    a = cls().attribute(model, images[:2], labels[:2])
    assert entries == [1], "the relevance pass must run under model.constant_gates()"
    assert model._source.detach is False and torch.isfinite(a).all()


# -- RISE ---------------------------------------------------------------------------------------


def test_rise_is_deterministic_under_its_seed_and_independent_of_the_batch(images, labels):
    model = tiny_net()
    a = RISE(n_masks=200, seed=3).attribute(model, images, labels)
    assert torch.equal(a, RISE(n_masks=200, seed=3).attribute(model, images, labels))
    assert not torch.allclose(a, RISE(n_masks=200, seed=4).attribute(model, images, labels))
    alone = RISE(n_masks=200, seed=3, batch_size=16).attribute(model, images[5:6], labels[5:6])
    torch.testing.assert_close(alone[0], a[5], atol=1e-5, rtol=1e-5)


def test_rise_masks_follow_the_paper():
    gen = torch.Generator().manual_seed(0)
    grids, shifts = rise_grids(500, 4, 0.3, gen)
    masks = rise_masks(grids, shifts, 20, 20)
    assert masks.shape == (500, 20, 20)
    assert masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert abs(grids.mean().item() - 0.3) < 0.03
    assert masks.std() > 0.1  # smooth, but not flat
    ones = rise_masks(torch.ones(1, 4, 4), torch.zeros(1, 2), 20, 20)
    assert torch.allclose(ones, torch.ones(1, 20, 20))


def test_rise_finds_the_region_the_model_looks_at():
    class LeftHalf(nn.Module):  # logit of class 1 grows with the brightness of the left half
        def forward(self, x):
            score = 8 * (x[:, :, :, :8].mean((1, 2, 3)) - 0.5)
            return torch.stack([torch.zeros_like(score), score], 1)

    images = torch.ones(1, 3, 16, 16)
    maps = RISE(n_masks=500, grid_size=4).attribute(LeftHalf(), images, torch.tensor([1]))
    assert maps[0, :, :6].mean() > maps[0, :, 10:].mean() + 0.05


# -- SmoothGrad, controls -----------------------------------------------------------------------


def test_smoothgrad_noise_is_seeded_per_image(images, labels):
    model = tiny_net()
    a = SmoothGrad(n_samples=6, seed=1).attribute(model, images, labels)
    alone = SmoothGrad(n_samples=6, seed=1).attribute(model, images[2:3], labels[2:3])
    torch.testing.assert_close(alone[0], a[2], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a, SmoothGrad(n_samples=6, seed=2).attribute(model, images, labels))


def test_random_control_is_seeded_per_image(images, labels):
    a = RandomMap(seed=0).attribute(None, images, labels)
    assert torch.equal(RandomMap(seed=0).attribute(None, images[3:5], labels[3:5]), a[3:5])
    assert not torch.equal(a, RandomMap(seed=1).attribute(None, images, labels))
    assert 0 <= a.min() and a.max() < 1 and not torch.equal(a[0], a[1])


def naive_sobel(image):
    """The textbook Sobel magnitude of one [H, W] channel, border replicated, in plain Python."""
    h, w = image.shape
    kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    out = torch.zeros(h, w)
    for i in range(h):
        for j in range(w):
            gx = gy = 0.0
            for di in range(3):
                for dj in range(3):
                    v = float(image[min(max(i + di - 1, 0), h - 1), min(max(j + dj - 1, 0), w - 1)])
                    gx += kx[di][dj] * v
                    gy += kx[dj][di] * v
            out[i, j] = math.hypot(gx, gy)
    return out


def test_sobel_against_hand_computed_values():
    step = torch.zeros(1, 3, 6, 6)
    step[0, 0, :, 3:] = 1.0  # a vertical edge in the red channel between columns 2 and 3
    edge = Sobel().attribute(None, step, torch.tensor([0]))[0]
    expected = torch.zeros(6, 6)
    expected[:, 2:4] = 4.0  # (1 + 2 + 1) * (1 - 0) on both sides of the edge, 0 elsewhere
    torch.testing.assert_close(edge, expected)
    image = torch.rand(2, 3, 7, 5, generator=torch.Generator().manual_seed(0))
    ours = Sobel().attribute(None, image, torch.tensor([0, 1]))
    ref = torch.stack([sum(naive_sobel(image[b, c]) for c in range(3)) for b in range(2)])
    torch.testing.assert_close(ours, ref)


def test_center_against_hand_computed_values():
    maps = Center(sigma=0.25).attribute(None, torch.zeros(2, 3, 9, 9), torch.tensor([0, 1]))
    assert maps.shape == (2, 9, 9) and torch.equal(maps[0], maps[1])
    assert maps[0, 4, 4] == 1.0  # the centre of an odd-sided image
    sigma = 0.25 * 9
    assert maps[0, 4, 0].item() == pytest.approx(math.exp(-16 / (2 * sigma**2)), rel=1e-6)
    assert maps[0, 0, 0].item() == pytest.approx(math.exp(-32 / (2 * sigma**2)), rel=1e-6)
    even = Center(sigma=0.1).attribute(None, torch.zeros(1, 3, 4, 8), torch.tensor([0]))[0]
    torch.testing.assert_close(even, even.flip(0).flip(1))  # symmetric about the centre


# -- occlusion ----------------------------------------------------------------------------------


def test_occlusion_on_a_linear_model_is_the_mean_patch_contribution():
    """f_1(x) = sum(w * x): occluding a patch with 0 drops f by its patch's sum of w * x; with
    window == stride the patches tile the image, so each pixel gets its patch's drop."""
    w = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))

    class Linear(nn.Module):
        def forward(self, x):
            score = (x * w).sum((1, 2, 3))
            return torch.stack([-score, score], 1)

    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = Occlusion(window=4, stride=4).attribute(Linear(), x, torch.tensor([1]))[0]
    contrib = (w * x[0]).sum(0)
    expected = contrib.reshape(2, 4, 2, 4).sum((1, 3)).repeat_interleave(4, 0).repeat_interleave(4, 1)
    torch.testing.assert_close(maps, expected)
    assert windows_per_image(64, 64, 8, 4) == 225


def test_occlusion_checks_its_window():
    with pytest.raises(ParamError, match="stride"):
        Occlusion(window=4, stride=5)
    with pytest.raises(ValueError, match="occlusion: window 32 exceeds the 16x16 images"):
        Occlusion(window=32, stride=4).attribute(tiny_net(), torch.rand(1, 3, 16, 16), torch.tensor([0]))


# -- the runner refuses non-finite maps ---------------------------------------------------------


class NaNOnImage3(Method):
    """Returns NaN on the fourth image of each batch of 8 or more."""

    reduction = "n/a (test)"

    def attribute(self, model, images, targets):
        maps = torch.zeros(images.shape[0], *images.shape[2:])
        if images.shape[0] > 3:
            maps[3, 2, 1] = float("nan")
        return maps


def test_nan_map_is_an_error_naming_method_and_image(images, labels):
    maps = NaNOnImage3().attribute(None, images, labels)
    with pytest.raises(MethodError, match=r"method 'nanny' produced NaN or inf on test image 3$"):
        check_attributions(maps, images, "nanny", 0)
    inf = torch.zeros(8, 16, 16)
    inf[6, 0, 0] = -float("inf")
    with pytest.raises(MethodError, match="on test image 46"):
        check_attributions(inf, images, "nanny", 40)


def explain_all(method, name, split):
    """Every shard of batch size 8, in order, as an explain cell computes them."""
    for i in range(-(-len(split) // 8)):
        explain_shard(method, name, tiny_net(), split, i, run=RunConfig(batch_size=8),
                      device=torch.device("cpu"))


def test_explain_stops_on_the_first_nan_with_its_split_index(tmp_path):
    split = Split(torch.zeros(20, 3, 16, 16, dtype=torch.uint8), torch.zeros(20, dtype=torch.long))
    with pytest.raises(MethodError, match="method 'nanny' produced NaN or inf on test image 3$"):
        explain_all(NaNOnImage3(), "nanny", split)

    class NaNOnImage11(NaNOnImage3):
        def attribute(self, model, images, targets):
            maps = torch.zeros(images.shape[0], *images.shape[2:])
            maps[-1, 0, 0] = float("inf") if images.shape[0] == 4 else 0.0
            return maps

    with pytest.raises(MethodError, match="on test image 19$"):  # last batch: 16..19
        explain_all(NaNOnImage11(), "late", split)
