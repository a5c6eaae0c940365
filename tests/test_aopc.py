import math

import pytest
import torch
from torch import nn

from xaibench.metrics.aopc import AOPC, aopc, morf_curves, patch_grid, patch_order


class SumModel(nn.Module):
    """logit_1 = w * sum of the red channel, logit_0 = 0: p_1 = sigmoid(w * sum)."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        s = self.w * x[:, 0].sum((1, 2))
        return torch.stack([torch.zeros_like(s), s], 1)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_patch_order_sums_and_ties():
    a = torch.zeros(1, 4, 4)
    a[0, 2:, 2:] = 1.0  # patch 3 most relevant
    a[0, :2, 2:] = 0.5  # then patch 1; patches 0 and 2 tie -> index order
    assert patch_order(a, 2).tolist() == [[3, 1, 0, 2]]


def test_uneven_grid():
    assert patch_grid(10, 7, 4) == (3, 2)
    a = torch.zeros(1, 10, 7)
    a[0, 8:, 4:] = 1.0  # the cut-short bottom-right patch
    assert patch_order(a, 4)[0, 0].item() == 5


def test_curve_and_aopc_closed_form():
    # 8x8 white image, 4 patches of 16 pixels; p_k = sigmoid(1 - k/4) as patches turn black.
    x = torch.ones(1, 3, 8, 8)
    attr = torch.zeros(1, 8, 8)
    attr[0, 4:, 4:], attr[0, :4, 4:], attr[0, 4:, :4] = 3.0, 2.0, 1.0
    curves = morf_curves(SumModel(1 / 64), x, torch.tensor([1]), attr, patch_size=4, steps=4,
                         substrate=0.0)
    expected = [sigmoid(1 - k / 4) for k in range(5)]
    assert curves[0].tolist() == pytest.approx(expected, abs=1e-6)
    want = sum(expected[0] - e for e in expected) / 5
    assert aopc(curves)[0].item() == pytest.approx(want, abs=1e-6)


def test_matches_per_step_reference_loop():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(3, 3, 12, 10, generator=gen)
    attr = torch.rand(3, 12, 10, generator=gen)
    y = torch.tensor([0, 2, 1])
    curves = morf_curves(model, x, y, attr, patch_size=4, steps=6, substrate=0.5)
    for i in range(3):
        img = x[i].clone()
        order = patch_order(attr[i:i + 1], 4)[0]
        ref = []
        for k in range(7):
            if k:
                p = order[k - 1].item()
                r, c = divmod(p, 3)
                img[:, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = 0.5
            with torch.no_grad():
                ref.append(model(img[None]).softmax(1)[0, y[i]].item())
        assert curves[i].tolist() == pytest.approx(ref, abs=1e-6)


def test_metric_reports_curve_and_score():
    x = torch.ones(2, 3, 8, 8)
    attr = torch.rand(2, 8, 8)
    out = AOPC(patch_size=4, steps=2).evaluate(SumModel(1 / 64), x, torch.tensor([1, 0]), attr, None)
    assert out.curves["morf"].shape == (2, 3)
    assert torch.allclose(out.scores["aopc"], aopc(out.curves["morf"]))
    # class 0 gains probability as class 1 loses it: its AOPC is negative
    assert out.scores["aopc"][0] > 0 > out.scores["aopc"][1]
