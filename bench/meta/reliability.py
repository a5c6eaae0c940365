"""Reliability of a metric (Tomsett et al., "Sanity Checks for Saliency Metrics", AAAI 2020).

- Inter-rater reliability: do the images agree on the order of the methods? Each image is a
  rater of the methods' ranks (1 = best in the metric's direction); Krippendorff's alpha with
  the interval difference over methods (units) x images (raters). 1: every image orders the
  methods the same way; 0: no more agreement than chance. Tomsett et al. found at most 0.48;
  0.667 is the usual lowest acceptable value for tentative conclusions (Krippendorff 2004).
- Inter-method reliability: Spearman rho between the methods' per-image scores (does a metric
  score an image the same way whichever method explains it?).
- Internal consistency: Spearman rho between metrics over the same (method, image) pairs,
  each metric signed so that higher is better.

Arrays: ``scores`` [M, N] (methods x images); NaN marks a missing score.
"""

from __future__ import annotations

import numpy as np


def ranks(scores: np.ndarray, *, higher: bool) -> np.ndarray:
    """[M, N] rank of each method on each image (1 = best in the metric's direction, ties
    averaged); NaN where the score is missing (the other methods are ranked among themselves)."""
    from scipy.stats import rankdata

    signed = -np.asarray(scores, float) if higher else np.asarray(scores, float)
    return rankdata(signed, axis=0, nan_policy="omit")


def krippendorff_interval(data: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, of ``data`` [raters, units] (NaN: missing).

    alpha = 1 - D_o / D_e over the pairable values (units with at least two values):
    D_o = 1/n sum_u 1/(m_u - 1) sum_{i != j in u} (v_i - v_j)^2 and
    D_e = 1/(n (n - 1)) sum_{i != j} (v_i - v_j)^2 over all n pairable values.
    NaN when fewer than two units are pairable or every value is the same."""
    data = np.asarray(data, float)
    m = np.isfinite(data).sum(0)
    units = data[:, m >= 2]
    m = m[m >= 2]
    if units.shape[1] < 1:
        return float("nan")
    filled = np.where(np.isfinite(units), units, 0.0)
    s1, s2 = filled.sum(0), (filled ** 2).sum(0)
    n = m.sum()
    observed = (2 * (m * s2 - s1 ** 2) / (m - 1)).sum() / n  # ordered pairs within each unit
    expected = 2 * (n * s2.sum() - s1.sum() ** 2) / (n * (n - 1))
    return float("nan") if expected <= 0 else float(1.0 - observed / expected)


def inter_rater(scores: np.ndarray, *, higher: bool) -> float:
    """Tomsett's inter-rater reliability: Krippendorff's alpha (interval) of the images as
    raters of the methods' ranks."""
    return krippendorff_interval(ranks(scores, higher=higher).T)


def spearman_matrix(rows: np.ndarray) -> np.ndarray:
    """[R, R] Spearman rho between the rows of ``rows`` [R, N], each pair over the columns both
    have (NaN where fewer than 3 are shared or a row is constant there)."""
    from scipy.stats import spearmanr

    rows = np.asarray(rows, float)
    out = np.full((len(rows), len(rows)), np.nan)
    for i in range(len(rows)):
        for j in range(i, len(rows)):
            ok = np.isfinite(rows[i]) & np.isfinite(rows[j])
            if ok.sum() >= 3 and np.ptp(rows[i][ok]) > 0 and np.ptp(rows[j][ok]) > 0:
                out[i, j] = out[j, i] = spearmanr(rows[i][ok], rows[j][ok]).statistic
    return out


def off_diagonal_mean(matrix: np.ndarray) -> float:
    """The mean of a square matrix's finite entries off the diagonal (NaN when none)."""
    matrix = np.asarray(matrix, float)
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def inter_method(scores: np.ndarray) -> float:
    """Tomsett's inter-method reliability: the mean Spearman rho between pairs of methods'
    per-image scores."""
    return off_diagonal_mean(spearman_matrix(scores))


def internal_consistency(scores: dict[str, np.ndarray], higher: dict[str, bool]) -> np.ndarray:
    """[K, K] Spearman rho between metrics ({metric: [M, N]}, in dict order) over the same
    (method, image) pairs, each metric signed so that higher is better."""
    rows = [np.asarray(s, float).ravel() * (1 if higher[name] else -1) for name, s in scores.items()]
    return spearman_matrix(np.stack(rows)) if rows else np.zeros((0, 0))
