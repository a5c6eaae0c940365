import math

import numpy as np
import pandas as pd
import pytest
import torch

from xaibench.leaderboard import summarise
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
