import math

import numpy as np
import pandas as pd
import pytest
import torch

from xaibench.leaderboard.statistics import summarise
from xaibench.metrics.relevance_mass import RelevanceMass, relevance_mass


def test_relevance_mass_by_hand():
    a = torch.tensor([[[1.0, -2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    m = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.bool)
    abs_share = relevance_mass(a, m, positive_only=False)
    assert abs_share[0].item() == pytest.approx(3 / 10)
    assert abs_share[1].item() == 0.0  # an all-zero map puts no mass inside
    assert math.isnan(abs_share[2].item())  # empty mask: undefined
    assert relevance_mass(a, m, positive_only=True)[0].item() == pytest.approx(1 / 8)


def test_metric_wraps_the_function():
    a = torch.rand(2, 4, 4)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, :2] = True
    out = RelevanceMass().evaluate(None, torch.rand(2, 3, 4, 4), torch.zeros(2), a, m)
    assert torch.allclose(out.scores["relevance_mass"], relevance_mass(a, m, positive_only=False))
    assert RelevanceMass.requires_masks and RelevanceMass.higher_is_better


def test_leaderboard_leaves_undefined_images_out():
    scores = pd.DataFrame({"model": "m", "method": "x", "metric": "relevance_mass", "higher_is_better": True,
                           "index": np.arange(4), "value": [0.5, np.nan, 1.0, np.nan]})
    board = summarise(scores, pd.DataFrame({"model": ["m"], "accuracy": [1.0]}), dataset="d", n_boot=100,
                      seed=0)
    row = board.iloc[0]
    assert row["n"] == 4 and row["relevance_mass_n"] == 2
    assert row["relevance_mass_mean"] == pytest.approx(0.75)


# -- POMPOM, pointing game, relevance rank, sparseness by hand ------------------------------------

from xaibench.metrics.pointing_game import PointingGame, pointing_game  # noqa: E402
from xaibench.metrics.pompom import POMPOM, pompom, scale_abs_max  # noqa: E402
from xaibench.metrics.relevance_rank import RelevanceRank, relevance_rank  # noqa: E402
from xaibench.metrics.sparseness import Sparseness, sparseness  # noqa: E402


def test_pompom_by_hand():
    m = torch.zeros(4, 2, 3, dtype=torch.bool)
    m[:, 0, :2] = True  # object: 2 pixels, background: 4 pixels
    a = torch.zeros(4, 2, 3)
    a[0] = torch.tensor([[5.0, 1.0, 0.0], [-2.0, 0.0, 3.0]])  # lit background: (1,0) and (1,2)
    a[1] = 0.0  # nothing lit
    a[2] = torch.tensor([[1.0, 1.0, 1e-7], [0.0, 0.0, 0.0]])  # 1e-7 / 1 = 1e-7 <= eps: not lit
    a[3] = 1.0
    m_full = m.clone()
    m_full[3] = True  # no background at all
    values = pompom(a, m_full)
    assert values[0].item() == pytest.approx(2 / (4 + 1e-6))
    assert values[1].item() == 0.0 and values[2].item() == 0.0
    assert math.isnan(values[3].item())
    empty = torch.zeros(1, 2, 3, dtype=torch.bool)  # no object: the whole image is background
    assert pompom(a[:1], empty).item() == pytest.approx(4 / (6 + 1e-6))
    # scaled by max |a| per image: the scale of a map does not matter, its sign neither
    torch.testing.assert_close(pompom(-1e4 * a, m_full), values, equal_nan=True)
    z, scale = scale_abs_max(a)
    assert scale.tolist() == [5.0, 0.0, 1.0, 1.0] and z.max() <= 1
    out = POMPOM().evaluate(None, torch.rand(4, 3, 2, 3), torch.zeros(4), a, m)
    assert set(out.scores) == {"pompom", "scaled_by_abs_max"}
    assert POMPOM.direction("pompom") is False and POMPOM.direction("scaled_by_abs_max") is None
    assert POMPOM.requires_masks


def test_pointing_game_by_hand():
    a = torch.tensor([[[0.0, 3.0], [1.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], [[-5.0, 1.0], [0.0, 0.0]],
                      [[1.0, 0.0], [0.0, 0.0]]])
    m = torch.tensor([[[0, 1], [0, 0]], [[1, 0], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [0, 0]]]).bool()
    hits = pointing_game(a, m)
    assert hits[:3].tolist() == [1.0, 0.25, 0.0]  # a hit; a 4-way tie with 1 inside; a miss
    assert math.isnan(hits[3].item())  # empty mask
    assert pointing_game(a, m, absolute=True)[2].item() == 1.0  # |-5| is the largest
    assert PointingGame.requires_masks and PointingGame.higher_is_better


def test_relevance_rank_by_hand():
    a = torch.tensor([[[4.0, 3.0, 2.0], [1.0, 0.0, -5.0]]])
    m = torch.tensor([[[1, 0, 1], [0, 0, 1]]], dtype=torch.bool)  # K = 3
    assert relevance_rank(a, m, positive_only=False).item() == pytest.approx(2 / 3)  # |-5|, 4, 3
    assert relevance_rank(a, m, positive_only=True).item() == pytest.approx(2 / 3)  # 4, 3, 2
    ties = torch.zeros(1, 2, 3)
    assert relevance_rank(ties, m, positive_only=False).item() == pytest.approx(2 / 3)  # pixels 0, 1, 2
    assert math.isnan(relevance_rank(a, torch.zeros_like(m), positive_only=False).item())
    assert RelevanceRank.requires_masks and RelevanceRank.higher_is_better


def test_sparseness_by_hand():
    n = 16
    one = torch.zeros(1, 4, 4)
    one[0, 1, 2] = -3.0
    flat = torch.full((1, 4, 4), 2.0)
    eps = 1e-7  # quantus' shift
    want_one = ((n - 1) * (1 + eps) - sum(2 * i - n - 1 for i in range(1, n)) * eps) / (n * (1 + n * eps))
    assert sparseness(one).item() == pytest.approx(want_one, abs=1e-6)  # ~ 1 - 1/n
    assert sparseness(flat).item() == pytest.approx(0.0, abs=1e-6)
    assert not Sparseness.requires_masks and Sparseness.higher_is_better


def test_thresholded_relevance_mass_by_hand():
    a = torch.tensor([[[1.0, 0.8, 0.1], [0.7, 0.0, 0.9]]])  # max 1; above 0.75: 1.0, 0.8, 0.9
    m = torch.tensor([[[1, 0, 0], [1, 0, 0]]], dtype=torch.bool)
    assert relevance_mass(a, m, positive_only=False).item() == pytest.approx(1.7 / 3.5)
    assert relevance_mass(a, m, positive_only=False, threshold=0.75).item() == pytest.approx(1 / 3)
    assert relevance_mass(a, m, positive_only=False, threshold=0.65).item() == pytest.approx(2 / 4)
    # sign: |a| by default, max(a, 0) with positive_only
    s = torch.tensor([[[-1.0, 0.5], [0.2, 0.0]]])
    ms = torch.tensor([[[0, 1], [0, 0]]], dtype=torch.bool)
    assert relevance_mass(s, ms, positive_only=False, threshold=0.4).item() == pytest.approx(1 / 2)
    assert relevance_mass(s, ms, positive_only=True, threshold=0.5).item() == pytest.approx(1.0)
    # an all-zero map scores 0, an empty mask NaN, as without a threshold
    zero = relevance_mass(torch.zeros(1, 2, 3), m, positive_only=False, threshold=0.75)
    assert zero.item() == 0.0
    assert torch.isnan(relevance_mass(a, torch.zeros_like(m), positive_only=False, threshold=0.75)).all()
    out = RelevanceMass(threshold=0.75).evaluate(None, None, None, a, m).scores["relevance_mass"]
    assert out.item() == pytest.approx(1 / 3)
    from xaibench.plugins import ParamError

    for bad in (-0.1, 1.0):
        with pytest.raises(ParamError):
            RelevanceMass(threshold=bad)


def test_pompom_on_positives_only_by_hand():
    a = torch.tensor([[[1.0, 0.0], [0.5, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    m = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.bool)
    every = pompom(a, m)  # image 0: 1 of 3 background pixels lit; image 1 (empty mask): 2 of 4
    assert every.tolist() == pytest.approx([1 / 3, 2 / 4], abs=1e-5)
    pos = pompom(a, m, images="positives")
    assert pos[0].item() == pytest.approx(1 / 3, abs=1e-5) and math.isnan(pos[1].item())
    out = POMPOM(images="positives").evaluate(None, None, None, a, m).scores["pompom"]
    assert torch.allclose(out, pos, equal_nan=True)
