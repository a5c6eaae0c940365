"""AOPC (MoRF, LeRF, gap) on toy models whose score is known in closed form."""

import math

import pytest
import torch
from torch import nn

from xaibench.metrics.aopc import AOPC
from xaibench.metrics.perturbation import aopc, perturbation_curves
from xaibench.params import build
from xaibench.plugins import ParamError

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_curve_and_aopc_closed_form():
    # 8x8 white image, 4 patches of 16 pixels; p_k = sigmoid(1 - k/4) as patches turn black.
    x = torch.ones(1, 3, 8, 8)
    attr = torch.zeros(1, 8, 8)
    attr[0, 4:, 4:], attr[0, :4, 4:], attr[0, 4:, :4] = 3.0, 2.0, 1.0
    curves = perturbation_curves(SumModel(1 / 64), x, attr, torch.tensor([1]), patch_size=4, steps=4)
    expected = [sigmoid(1 - k / 4) for k in range(5)]
    assert curves[0].tolist() == pytest.approx(expected, abs=1e-6)
    want = sum(expected[0] - e for e in expected) / 5
    assert aopc(curves)[0].item() == pytest.approx(want, abs=1e-6)


def test_morf_lerf_and_gap_closed_form():
    # red per patch (row-major): 1.0, 0.5, 0.25, 0.0; relevance ranks patches 3, 1, 2, 0 (MoRF)
    x = torch.ones(1, 3, 8, 8)
    for j, red in enumerate([1.0, 0.5, 0.25, 0.0]):
        r, c = divmod(j, 2)
        x[0, 0, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = red
    attr = torch.zeros(1, 8, 8)
    for j, rel in enumerate([0.1, 3.0, 2.0, 4.0]):
        r, c = divmod(j, 2)
        attr[0, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = rel / 16
    w = 1 / 16  # logit = w * 16 * (sum of the remaining patches' red)
    morf_red = [1.75, 1.75, 1.25, 1.0, 0.0]  # remove patch 3 (0), 1 (0.5), 2 (0.25), 0 (1)
    lerf_red = [1.75, 0.75, 0.5, 0.0, 0.0]   # remove patch 0 (1), 2 (0.25), 1 (0.5), 3 (0)
    morf = [sigmoid(v) for v in morf_red]
    lerf = [sigmoid(v) for v in lerf_red]
    out = AOPC(patch_size=4, steps=4).evaluate(SumModel(w), x, torch.tensor([1]), attr, None)
    assert out.curves["morf"][0].tolist() == pytest.approx(morf, abs=1e-6)
    assert out.curves["lerf"][0].tolist() == pytest.approx(lerf, abs=1e-6)
    want_morf = sum(morf[0] - v for v in morf) / 5
    want_lerf = sum(lerf[0] - v for v in lerf) / 5
    assert out.scores["aopc"].item() == pytest.approx(want_morf, abs=1e-6)
    assert out.scores["lerf"].item() == pytest.approx(want_lerf, abs=1e-6)
    assert out.scores["gap"].item() == pytest.approx(want_morf - want_lerf, abs=1e-6)
    assert AOPC.direction("aopc") is True and AOPC.direction("gap") is True
    assert AOPC.direction("lerf") is False


def test_metric_options():
    x = torch.ones(2, 3, 8, 8)
    attr = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 0])
    out = AOPC(patch_size=4, steps=2, lerf=False).evaluate(SumModel(1 / 64), x, y, attr, None)
    assert set(out.scores) == {"aopc"} and set(out.curves) == {"morf"}
    assert out.curves["morf"].shape == (2, 3)
    # class 0 gains probability as class 1 loses it: its AOPC is negative
    assert out.scores["aopc"][0] > 0 > out.scores["aopc"][1]
    # "predicted" scores class 1 (predicted on the clean white image) for both images
    pred = AOPC(patch_size=4, steps=2, score="predicted").evaluate(SumModel(1 / 64), x, torch.tensor([1, 0]),
                                                                   attr, None)
    torch.testing.assert_close(pred.scores["aopc"], out.scores["aopc"][:1].expand(2))
    # uniform noise is seeded by the metric's seed
    noisy = [AOPC(patch_size=4, steps=2, substrate="uniform", seed=s).evaluate(
        SumModel(1 / 64), x, torch.tensor([1, 1]), attr, None).scores["aopc"] for s in (0, 0, 1)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])


def test_config_checks():
    with pytest.raises(ParamError, match="patch_size: 64 is larger"):
        build(AOPC, {"patch_size": 64}).check_image_size(32, 32)
    with pytest.raises(ParamError, match="steps: 17 exceeds the 16 patches"):
        build(AOPC, {"steps": 17}).check_image_size(32, 32)
    build(AOPC, {"patch_size": 5, "steps": 49}).check_image_size(32, 32)  # 7 x 7 centred grid
    with pytest.raises(ParamError, match="blur_kernel: must be an odd"):
        build(AOPC, {"blur_kernel": 4})
    with pytest.raises(ParamError, match="blur_kernel: 31 is too large"):
        build(AOPC, {"substrate": "blur", "blur_kernel": 31, "patch_size": 4,
                     "steps": 2}).check_image_size(12, 12)


def test_paper_grid_is_shipped_configuration():
    from xaibench.config import load

    cfg = load("aopc_grid")
    grid = {(dict(m.params)["patch_size"], dict(m.params)["substrate"]) for m in cfg.metrics}
    assert all(m.plugin == "aopc" for m in cfg.metrics)
    assert grid == {(p, s) for p in (4, 8, 16, 32) for s in ("black", "gray", "white", "blur", "uniform")}
    study = load("synthetic_seeds")  # the 64 px study's data and models
    assert cfg.resolved()["dataset"] == study.resolved()["dataset"]
    assert cfg.resolved()["models"] == study.resolved()["models"]
