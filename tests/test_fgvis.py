"""FGVis: the defense's gradient filter, batch independence, the deletion game."""

import pytest
import torch
from torch import nn

from xaibench.methods.fgvis import FGVis, activation_defense, fgvis_masks, recorded_activations
from xaibench.models.modelstate import eval_mode

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


class TwiceReLU(nn.Module):
    """One ReLU module called twice per forward, on tensors of the same shape (as in a
    torchvision BasicBlock), so that mixing up the two calls' bounds would go unnoticed by
    shapes."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        h = self.relu(self.conv2(h) - 0.5)
        return self.head(h.mean((2, 3)))


def _inside(a, ref):
    return (a >= torch.clamp(ref, max=0)) & (a <= torch.clamp(ref, min=0))


def recorded_twice_relu(seed: int):
    """A TwiceReLU, a perturbed input e (requires grad) and the activations recorded on the
    clean input it was perturbed from."""
    model = TwiceReLU().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    e = (x * 1.5 + 0.3 * torch.randn(x.shape, generator=gen)).requires_grad_(True)
    with recorded_activations(model) as records, torch.no_grad():
        model(x)
    return model, e, records


def test_gradient_filter_zeroes_exactly_the_out_of_bound_gradients_per_call():
    model, e, records = recorded_twice_relu(seed=0)
    r1, r2 = records[model.relu]  # one entry per call
    assert len(records[model.relu]) == 2

    # reference by hand: plain autograd with each call's activation gradient masked by its bounds
    a1 = torch.relu(model.conv1(e))
    keep1 = _inside(a1.detach(), r1)
    a1.register_hook(lambda g: g * keep1)
    a2 = torch.relu(model.conv2(a1) - 0.5)
    keep2 = _inside(a2.detach(), r2)
    a2.register_hook(lambda g: g * keep2)
    (expected,) = torch.autograd.grad(model.head(a2.mean((2, 3)))[:, 0].sum(), e)
    for keep in (keep1, keep2):  # the test means something: both calls cut some, keep some
        assert keep.any() and not keep.all()
    assert not torch.equal(keep2, _inside(a2.detach(), r1)), "call 1's bounds would pass unnoticed"

    with activation_defense(model, records):
        (got,) = torch.autograd.grad(model(e)[:, 0].sum(), e)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_gradient_filter_at_the_activations():
    """The gradient reaching each ReLU output is zero exactly where the activation is out of
    bounds, and untouched elsewhere, for both calls of the module."""
    model, e, records = recorded_twice_relu(seed=1)
    seen = []

    def capture(module, inputs, out):
        # registered after the defense's hook: its tensor hook runs after the defense's filter
        out.register_hook(lambda g: seen.append(g.clone()))
        return None  # (a forward hook's return value would replace the output)

    with activation_defense(model, records):
        handle = model.relu.register_forward_hook(capture)
        acts = []
        probe = model.relu.register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
        out = model(e)
        handle.remove()
        probe.remove()
        out[:, 0].sum().backward()
    # backward visits the second call first
    grads = {0: seen[1], 1: seen[0]}
    unfiltered = []
    model2 = TwiceReLU().eval()  # the same weights: the gradients without the defense
    e2 = e.detach().clone().requires_grad_(True)
    model2.relu.register_forward_hook(
        lambda m, i, o: o.register_hook(lambda g: unfiltered.append(g.clone())) and None)
    model2(e2)[:, 0].sum().backward()
    raw = {0: unfiltered[1], 1: unfiltered[0]}
    for call, ref in enumerate(records[model.relu]):
        inside = _inside(acts[call], ref)
        assert (~inside).any()
        assert torch.all(grads[call][~inside] == 0)
        # inside the bounds: the gradient is not zeroed by the filter of this call (it may
        # differ from the raw one only through the later call's filter upstream)
        if call == 1:
            torch.testing.assert_close(grads[call][inside], raw[call][inside])


def test_forward_clipping_keeps_activations_in_bounds():
    model = TwiceReLU().eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    e = x * 2.0
    with recorded_activations(model) as records, torch.no_grad():
        model(x)
    acts = []
    with activation_defense(model, records, clip=True), torch.no_grad():
        probe = model.relu.register_forward_hook(lambda m, i, o: acts.append(o.clone()))
        model(e)
        probe.remove()
    for act, ref in zip(acts, records[model.relu]):
        assert _inside(act, ref).all()


@pytest.mark.parametrize("game", ["deletion", "preservation"])
def test_batched_equals_one_image_at_a_time(game, images):
    model = tiny_net()
    x = images[:4]
    y = model(x).argmax(1)
    method = FGVis(game=game, max_steps=60, seed=7)
    batched = method.attribute(model, x, y)
    alone = torch.cat([FGVis(game=game, max_steps=60, seed=7).attribute(model, x[i:i + 1], y[i:i + 1])
                       for i in range(4)])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    assert batched.min() >= 0 and batched.max() <= 1


def test_deletion_lowers_the_target_score(images):
    model = tiny_net()
    x = images[:4]
    with torch.no_grad():
        y = model(x).argmax(1)
        clean = model(x).softmax(1).gather(1, y[:, None])[:, 0]
    with eval_mode(model), torch.enable_grad():
        masks = fgvis_masks(model, x, y, game="deletion", phi="softmax", sparsity=1e-4, lr=0.1,
                            noise=0.1, max_steps=200, clip=False,
                            generator=torch.Generator().manual_seed(0))
    assert masks.shape == x.shape and masks.min() >= 0 and masks.max() <= 1
    with torch.no_grad():
        deleted = model(x * masks).softmax(1).gather(1, y[:, None])[:, 0]
    assert torch.all(deleted < clean), (deleted, clean)
    # most of the image is kept: the deletion game removes evidence, not the whole image
    assert masks.mean() > 0.5
    a = FGVis(max_steps=200).attribute(model, x, y)
    torch.testing.assert_close(a, 1 - masks.mean(1), rtol=0, atol=1e-6)


def test_preservation_map_is_the_mean_mask(images):
    model = tiny_net()
    x = images[:2]
    y = model(x).argmax(1)
    with eval_mode(model), torch.enable_grad():
        masks = fgvis_masks(model, x, y, game="preservation", phi="cross_entropy", sparsity=1e-3,
                            lr=0.1, noise=0.1, max_steps=30, clip=True,
                            generator=torch.Generator().manual_seed(0))
    a = FGVis(game="preservation", phi="cross_entropy", sparsity=1e-3, max_steps=30, clip=True).attribute(
        model, x, y)
    torch.testing.assert_close(a, masks.mean(1), rtol=0, atol=1e-6)
    assert masks.mean() < 1  # the sparsity term removed something
