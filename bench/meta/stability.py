"""Rank stability of a metric under its own knobs (substrate, patch size, order, logits or
softmax): given each method's mean score under several settings, how often each method takes
each rank, and Kendall tau between the settings' rankings (Quantus's tutorial counts ranks over
a sweep the same way). Pure numpy; ``means`` is [S, M] (settings x methods)."""

from __future__ import annotations

import numpy as np


def setting_ranks(means: np.ndarray, *, higher: bool) -> np.ndarray:
    """[S, M] rank of each method under each setting (1 = best in the metric's direction; ties
    take the lowest rank of the tie, so every rank counted is one a method holds)."""
    from scipy.stats import rankdata

    signed = -np.asarray(means, float) if higher else np.asarray(means, float)
    return rankdata(signed, axis=1, method="min")


def rank_frequencies(means: np.ndarray, *, higher: bool) -> np.ndarray:
    """[M, M] share of the settings in which method m takes rank r + 1 (rows sum to 1)."""
    r = setting_ranks(means, higher=higher).astype(int)
    s, m = r.shape
    out = np.zeros((m, m))
    for j in range(m):
        out[j] = np.bincount(r[:, j] - 1, minlength=m)[:m] / s
    return out


def kendall_matrix(means: np.ndarray) -> np.ndarray:
    """[S, S] Kendall tau (tau-b) between the settings' orders of the methods (1 on the
    diagonal; NaN where a setting scores every method the same)."""
    from scipy.stats import kendalltau

    means = np.asarray(means, float)
    out = np.eye(len(means))
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            out[i, j] = out[j, i] = kendalltau(means[i], means[j]).statistic
    return out


def stability(means: np.ndarray) -> float:
    """The mean Kendall tau between pairs of settings (1: every setting orders the methods the
    same way; NaN with fewer than two settings)."""
    tau = kendall_matrix(means)
    values = tau[~np.eye(len(tau), dtype=bool)]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")
