"""RISE deletion and insertion AUCs on a toy model whose score is known in closed form."""

import math

import pytest
import torch
from torch import nn

from xaibench.metrics.deletion import Deletion, pixel_steps
from xaibench.metrics.insertion import Insertion
from xaibench.metrics.perturbation import FALLBACK_MEAN, auc
from xaibench.plugins import ParamError

pytestmark = pytest.mark.usefixtures("one_thread")


class RedSum(nn.Module):
    """logit_1 = w * sum of the red channel, logit_0 = 0 (optionally with a ``mean`` buffer)."""

    def __init__(self, w, mean=None):
        super().__init__()
        self.w = w
        if mean is not None:
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))

    def forward(self, x):
        s = self.w * x[:, 0].sum((1, 2))
        return torch.stack([torch.zeros_like(s), s], 1)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def trapezoid(values):
    n = len(values) - 1
    return (sum(values) - values[0] / 2 - values[-1] / 2) / n


def ranked_attr():
    """A 4x4 map with distinct values: pixel j (row-major) has relevance 16 - j (first is most)."""
    return (16 - torch.arange(16.0)).view(1, 4, 4)


@pytest.mark.parametrize("substrate, model, red", [
    ("black", RedSum(0.25), 0.0),
    ("mean", RedSum(0.25, mean=(0.2, 0.3, 0.4)), 0.2),
    ("mean", RedSum(0.25), FALLBACK_MEAN[0]),  # no mean buffer: the ImageNet mean
])
def test_deletion_closed_form(substrate, model, red):
    x = torch.ones(1, 3, 4, 4)
    out = Deletion(step=5, substrate=substrate).evaluate(model, x, torch.tensor([0]), ranked_attr(), None)
    # 16 pixels, 5 per step: n = 4 steps removing 5, 5, 5, 1 pixels; predicted class 1 (w > 0)
    removed = [0, 5, 10, 15, 16]
    expected = [sigmoid(0.25 * (16 - r * (1 - red))) for r in removed]
    assert out.curves["curve"][0].tolist() == pytest.approx(expected, abs=1e-6)
    assert out.scores["deletion"].item() == pytest.approx(trapezoid(expected), abs=1e-6)
    assert Deletion.higher_is_better is False


def test_deletion_removes_the_most_relevant_pixels_first():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0].view(-1)[:8] = 1.0  # the 8 most relevant pixels are red
    out = Deletion(step=4, substrate="black").evaluate(RedSum(0.5), x, torch.tensor([1]), ranked_attr(), None)
    expected = [sigmoid(0.5 * v) for v in (8, 4, 0, 0, 0)]
    assert out.curves["curve"][0].tolist() == pytest.approx(expected, abs=1e-6)


def test_insertion_closed_form():
    x = torch.ones(1, 3, 4, 4)
    # from black, 4 pixels back per step: red sums 0, 4, 8, 12, 16; predicted on the clean image: 1
    insertion = Insertion(step=4, substrate="black")
    out = insertion.evaluate(RedSum(0.25), x, torch.tensor([0]), ranked_attr(), None)
    expected = [sigmoid(0.25 * 4 * k) for k in range(5)]
    assert out.curves["curve"][0].tolist() == pytest.approx(expected, abs=1e-6)
    assert out.scores["insertion"].item() == pytest.approx(trapezoid(expected), abs=1e-6)
    # "softmax" scores the given target instead (class 0 here)
    given = Insertion(step=4, substrate="black", score="softmax").evaluate(
        RedSum(0.25), x, torch.tensor([0]), ranked_attr(), None)
    assert given.curves["curve"][0].tolist() == pytest.approx([1 - e for e in expected], abs=1e-6)


def test_insertion_starts_from_the_rise_blur():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    attr = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(1))
    out = Insertion(step=16).evaluate(RedSum(0.05), x, torch.tensor([1, 1]), attr, None)
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    blurred = tv.gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0])
    start = torch.sigmoid(0.05 * blurred[:, 0].sum((1, 2)))
    torch.testing.assert_close(out.curves["curve"][:, 0], start, atol=1e-6, rtol=0)
    clean = torch.sigmoid(0.05 * x[:, 0].sum((1, 2)))
    torch.testing.assert_close(out.curves["curve"][:, -1], clean, atol=1e-6, rtol=0)
    assert out.curves["curve"].shape == (2, pixel_steps(12, 12, 16) + 1) == (2, 10)


def test_auc_formula_and_checks():
    c = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]])
    assert auc(c).tolist() == pytest.approx([0.5, 0.2])
    with pytest.raises(ParamError, match="step: 300 exceeds the 256 pixels"):
        Deletion(step=300).check_image_size(16, 16)
    with pytest.raises(ParamError, match="blur_kernel"):
        Insertion(step=4).check_image_size(5, 5)
