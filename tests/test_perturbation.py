"""The batched perturbation engine against a plain per-image, per-step loop, by hand and in chunks."""

import math

import pytest
import torch
from torch import nn

from xaibench.metrics.perturbation import (
    FALLBACK_MEAN,
    gaussian_blur,
    make_substrate,
    max_steps,
    patch_index_map,
    patch_order,
    perturbation_curves,
    predict,
    step_map,
)

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


def data(b=4, h=16, w=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, h, w, generator=gen), torch.randn(b, h, w, generator=gen),
            torch.randint(0, 2, (b,), generator=gen))


def reference_curves(model, images, attributions, targets, *, patch_size, steps, order, values,
                     score, ranked=None, patches_per_step=1):
    """One image and one step at a time: rank the patches with sorted(), paste each patch's
    substrate pixels in with slices, run the model on the single image."""
    b, _, h, w = images.shape
    p = patch_size
    gh, gw = math.ceil(h / p), math.ceil(w / p)
    top, left = (gh * p - h) // 2, (gw * p - w) // 2

    def box(j):
        r, c = divmod(j, gw)
        return (slice(max(r * p - top, 0), min((r + 1) * p - top, h)),
                slice(max(c * p - left, 0), min((c + 1) * p - left, w)))

    curves = []
    for i in range(b):
        sums = [attributions[i][box(j)].double().sum().item() for j in range(gh * gw)]
        if order == "morf":
            queue = sorted(range(gh * gw), key=lambda j: (-sums[j], j))
        elif order == "lerf":
            queue = sorted(range(gh * gw), key=lambda j: (sums[j], j))
        else:
            queue = ranked[i].tolist()
        sub = (values[i] if values.shape[0] > 1 else values[0]).expand(3, h, w)
        x = images[i].clone()
        curve, cls = [], targets[i] if targets is not None else None
        for k in range(steps + 1):
            if k:
                for j in queue[(k - 1) * patches_per_step:k * patches_per_step]:
                    rows, cols = box(j)
                    x[:, rows, cols] = sub[:, rows, cols]
            with torch.no_grad():
                logits = model(x[None])[0]
            if score == "predicted" and k == 0:
                cls = logits.argmax()
            curve.append((logits[cls] if score == "logit" else logits.softmax(0)[cls]).item())
        curves.append(curve)
    return torch.tensor(curves)


SUBSTRATES = ["black", "white", "gray", "mean", "blur", "uniform", "callable", "tensor"]


def substrate_arg(name, images):
    if name == "callable":
        return lambda x: x.flip(3) * 0.5  # per image: the mirrored image, darkened
    if name == "tensor":
        return torch.tensor([0.9, 0.1, 0.3]).view(3, 1, 1)  # a colour, broadcast
    return name


@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
@pytest.mark.parametrize("substrate", SUBSTRATES)
def test_engine_equals_plain_loop_for_every_order_and_substrate(order, substrate):
    model = tiny_net()
    x, a, y = data(3, 16, 12)
    sub = substrate_arg(substrate, x)
    curves = perturbation_curves(model, x, a, y, patch_size=4, steps=9, order=order, substrate=sub,
                                 chunk_size=5, generator=torch.Generator().manual_seed(3))
    # the same draws as the engine: substrate first, then the random order, from one generator
    gen = torch.Generator().manual_seed(3)
    values = make_substrate(model, x, sub, generator=gen)
    ranked = patch_order(a, 4, order="random", generator=gen) if order == "random" else None
    ref = reference_curves(model, x, a, y, patch_size=4, steps=9, order=order, values=values,
                           score="softmax", ranked=ranked)
    torch.testing.assert_close(curves, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("score", ["softmax", "predicted", "logit"])
@pytest.mark.parametrize("size, patch, per_step", [((16, 16), 4, 1), ((13, 10), 4, 1), ((9, 7), 1, 5)])
def test_engine_equals_plain_loop_for_scores_uneven_sizes_and_pixel_steps(score, size, patch, per_step):
    model = tiny_net(num_classes=3)
    x, a, _ = data(3, *size, seed=1)
    y = torch.tensor([2, 0, 1])
    steps = max_steps(*size, patch, per_step)
    curves = perturbation_curves(model, x, a, y, patch_size=patch, steps=steps, score=score,
                                 substrate="gray", chunk_size=4, patches_per_step=per_step)
    ref = reference_curves(model, x, a, y, patch_size=patch, steps=steps, order="morf",
                           values=torch.full((1, 3, 1, 1), 0.5), score=score, patches_per_step=per_step)
    torch.testing.assert_close(curves, ref, atol=1e-5, rtol=0)
    if score == "softmax":  # the last step is an all-gray image
        with torch.no_grad():
            gray = model(torch.full((1, 3, *size), 0.5)).softmax(1)[0]
        torch.testing.assert_close(curves[:, -1], gray[y], atol=1e-6, rtol=0)


def test_patch_ranking_ties_by_index_and_centred_grid():
    a = torch.zeros(1, 4, 4)
    a[0, 2:, 2:] = 1.0  # patch 3 most relevant
    a[0, :2, 2:] = 0.5  # then patch 1; patches 0 and 2 tie -> index order
    assert patch_order(a, 2).tolist() == [[3, 1, 0, 2]]
    assert patch_order(a, 2, order="lerf").tolist() == [[0, 2, 1, 3]]
    # 10 x 7 with 4-px patches: rows 3, 4, 3 pixels high; columns 4 and 3 wide
    grid = patch_index_map(10, 7, 4)
    assert grid[:, 0].tolist() == [0] * 3 + [2] * 4 + [4] * 3
    assert grid[0].tolist() == [0] * 4 + [1] * 3
    b = torch.zeros(1, 10, 7)
    b[0, 7:, 4:] = 1.0  # the cut-short bottom-right patch
    assert patch_order(b, 4)[0, 0].item() == 5
    when = step_map(b, 4, patches_per_step=2)
    assert when[0, 9, 6].item() == 1 and when[0, 0, 0].item() == 1 and when[0, 5, 5].item() == 3


def test_random_order_and_uniform_noise_are_seeded_and_leave_the_global_rng():
    model = tiny_net()
    x, a, y = data()
    state = torch.get_rng_state()

    def run(seed):
        return perturbation_curves(model, x, a, y, patch_size=4, steps=6, order="random",
                                   substrate="uniform", generator=torch.Generator().manual_seed(seed))

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state)
    ranked = patch_order(a, 4, order="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(ranked.sort(1).values, torch.arange(16).expand(4, 16))


def test_substrates_by_hand():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = tiny_net()
    assert make_substrate(model, x, "white").flatten().tolist() == [1.0] * 3
    assert make_substrate(model, x, "gray").flatten().tolist() == [0.5] * 3
    torch.testing.assert_close(make_substrate(model, x, "mean").flatten(), model.mean.flatten())
    assert make_substrate(nn.Identity(), x, "mean").flatten().tolist() == pytest.approx(FALLBACK_MEAN)
    noise = make_substrate(model, x, "uniform", generator=torch.Generator().manual_seed(5))
    assert noise.shape == x.shape and 0 <= noise.min() and noise.max() <= 1
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    torch.testing.assert_close(make_substrate(model, x, "blur"),
                               tv.gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(gaussian_blur(x, kernel=3, sigma=0.8),
                               tv.gaussian_blur(x, kernel_size=[3, 3], sigma=[0.8, 0.8]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="does not broadcast"):
        make_substrate(model, x, torch.zeros(5, 3, 16, 16))
    with pytest.raises(ValueError, match="substrate must be one of"):
        make_substrate(model, x, "pink")


@pytest.mark.parametrize("chunk", [1, 3, 16, 1000])
def test_chunk_size_does_not_change_curves(chunk):
    model = tiny_net()
    x, a, y = data(5)
    base = perturbation_curves(model, x, a, y, patch_size=4, steps=8, score="predicted", chunk_size=7)
    torch.testing.assert_close(perturbation_curves(model, x, a, y, patch_size=4, steps=8, score="predicted",
                                                   chunk_size=chunk), base, atol=1e-6, rtol=0)


def test_largest_forward_batch_stays_within_chunk_size():
    """Memory: however many images x steps, the model never sees more than chunk_size inputs."""
    model = tiny_net()
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        for b, steps in [(1, 2), (3, 8), (12, 16)]:
            x, a, y = data(b)
            seen.clear()
            perturbation_curves(model, x, a, y, patch_size=4, steps=steps, chunk_size=10)
            assert max(seen) <= 10
            assert sum(seen) == b * (steps + 1)  # each (image, step) exactly once
    finally:
        handle.remove()


def test_predict_and_options():
    model = tiny_net()
    x, a, y = data(5)
    with torch.no_grad():
        assert torch.equal(predict(model, x, chunk_size=2), model(x).argmax(1))
    base = perturbation_curves(model, x, a, y, patch_size=4, steps=5)
    last = perturbation_curves(model, x, a, y, patch_size=4, steps=5, channels_last=True)
    torch.testing.assert_close(last, base, atol=1e-5, rtol=0)
    half = perturbation_curves(model, x, a, y, patch_size=4, steps=5, autocast="bf16")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, base, atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="steps must be in"):
        perturbation_curves(model, x, a, y, patch_size=4, steps=17)
    with pytest.raises(ValueError, match="needs targets"):
        perturbation_curves(model, x, a, None, patch_size=4, steps=2)
    assert perturbation_curves(model, x, a, None, patch_size=4, steps=2, score="predicted").shape == (5, 3)


def test_model_left_as_it_came_and_inputs_untouched():
    model = tiny_net()
    x, a, y = data()
    x0, a0 = x.clone(), a.clone()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    perturbation_curves(model, x, a, y, patch_size=4, steps=4, substrate="blur")
    assert torch.equal(x, x0) and torch.equal(a, a0)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = tiny_net()
    x, a, y = data()
    cpu = perturbation_curves(model, x, a, y, patch_size=4, steps=6, order="random", substrate="uniform")
    gpu = perturbation_curves(model.cuda(), x.cuda(), a.cuda(), y.cuda(), patch_size=4, steps=6,
                              order="random", substrate="uniform")
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
