"""Rankings no more decisive than the evidence: paired tests between methods on the same images,
rank intervals, the "better than the controls" check, and whether a model is above chance.

The rule (README, "What a run writes"): for one model and one ranked metric, every pair of methods
is compared on the images both are defined on with a two-sided Wilcoxon signed-rank test of the
per-image differences (zero differences dropped; scipy's exact null distribution for small
samples, the normal approximation otherwise), Holm-corrected over the k(k-1)/2 pairs at
``ALPHA``. A method's rank interval is [1 + the number of methods significantly better than it,
k - the number significantly worse]: methods that are not significantly different share ranks,
and a method is alone at rank 1 only when it beats every other one. The ranks order methods by
their means, and the signed-rank test orders them by their typical per-image difference; where
the two disagree (a method better on most images but worse in the mean, through a few large
differences) the pair counts as not significantly different, so a rank never claims an order the
test contradicts. No resampling, so the ranks are the same on every run.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

ALPHA = 0.05
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` over the images where both are finite, without the differences within 1e-9 of
    the larger magnitude (float noise between equal maps is not evidence)."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.asarray(a, float)[ok], np.asarray(b, float)[ok]
    d = a - b
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    return d[np.abs(d) > 1e-9 * scale]


def paired_p(a: np.ndarray, b: np.ndarray, *, alternative: str = "two-sided") -> float:
    """Wilcoxon signed-rank p-value of ``a - b`` over the images where both are finite.

    Differences within 1e-9 of the larger magnitude count as zero (float noise between equal
    maps is not evidence). ``alternative="greater"``: a is larger than b. 1.0 when no difference
    is left.
    """
    from scipy.stats import wilcoxon

    d = _differences(a, b)
    if len(d) == 0:
        return 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(wilcoxon(d, alternative=alternative).pvalue)
    return p if np.isfinite(p) else 1.0


def signed_rank_sign(a: np.ndarray, b: np.ndarray) -> int:
    """The direction the signed-rank test sees in ``a - b``: +1 when the positive differences
    carry more rank (a tends to be larger), -1 when the negative ones do, 0 when balanced or no
    difference is left (the same differences as :func:`paired_p`)."""
    from scipy.stats import rankdata

    d = _differences(a, b)
    return int(np.sign((rankdata(np.abs(d)) * np.sign(d)).sum())) if len(d) else 0


def column_means(table: pd.DataFrame) -> np.ndarray:
    """Each method's (column's) mean over its finite images; NaN when it has none."""
    return np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan
                     for c in table.to_numpy(float).T])


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def different(table: pd.DataFrame) -> np.ndarray:
    """[k, k] bool: the pairs of methods (columns of ``table``: images x methods) whose paired
    difference is significant after Holm's correction over all pairs, in the direction of their
    means (a pair whose signed ranks point the other way than the means is not counted)."""
    values, means = table.to_numpy(dtype=float), column_means(table)
    k = values.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    out = np.zeros((k, k), dtype=bool)
    if not pairs:
        return out
    adjusted = holm(np.array([paired_p(values[:, i], values[:, j]) for i, j in pairs]))
    for (i, j), p in zip(pairs, adjusted):
        agree = signed_rank_sign(values[:, i], values[:, j]) == np.sign(means[i] - means[j])
        out[i, j] = out[j, i] = bool(p < ALPHA and agree)
    return out


def rank_intervals(means: np.ndarray, significant: np.ndarray, *,
                   higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """Best and worst rank each method may take: 1 + #(significantly better), k - #(significantly
    worse), "better" by the means in the metric's direction."""
    signed = np.asarray(means, dtype=float) * (1 if higher else -1)
    better = significant & (signed[None, :] > signed[:, None])  # [i, j]: j beats i
    worse = significant & (signed[None, :] < signed[:, None])
    k = int(np.isfinite(signed).sum())  # methods undefined on every image are not ranked
    return 1.0 + better.sum(1), float(k) - worse.sum(1)


def best_control(means: dict[str, float], *, higher: bool) -> str | None:
    """The control with the best mean score (ties: the first name in sort order)."""
    sign = 1 if higher else -1
    scored = [(sign * m, name) for name, m in sorted(means.items()) if np.isfinite(m)]
    return max(scored, key=lambda t: t[0])[1] if scored else None


def beats_controls(table: pd.DataFrame, controls: list[str], *,
                   higher: bool) -> tuple[str | None, dict[str, bool]]:
    """Whether each non-control method is significantly better than the best control (by mean):
    a better mean and a one-sided Wilcoxon signed-rank test per method, Holm-corrected over the
    methods. Returns the best control's name (None without controls) and method -> flag."""
    present = [c for c in controls if c in table.columns]
    if not present:
        return None, {}
    sign = 1 if higher else -1
    means = dict(zip(table.columns, column_means(table)))
    best = best_control({c: means[c] for c in present}, higher=higher)
    if best is None:
        return None, {}
    methods = [m for m in table.columns if m not in present]
    p = [paired_p(sign * table[m].to_numpy(float), sign * table[best].to_numpy(float),
                  alternative="greater") for m in methods]
    adjusted = holm(np.array(p)) if p else np.array([])
    return best, {m: bool(q < ALPHA and sign * (means[m] - means[best]) > 0)
                  for m, q in zip(methods, adjusted)}


def evidence(table: pd.DataFrame, controls: list[str], *, higher: bool) -> pd.DataFrame:
    """Per method (rows; ``table`` is images x methods of one model and metric): ``rank`` (best
    rank it may take), ``rank_worst`` and ``beats_controls`` (None for the controls themselves
    and when there is no control)."""
    means = column_means(table)
    best, worst = rank_intervals(means, different(table), higher=higher)
    best[np.isnan(means)] = worst[np.isnan(means)] = np.nan  # undefined on every image: unranked
    _, beats = beats_controls(table, controls, higher=higher)
    return pd.DataFrame({"rank": best, "rank_worst": worst,
                         "beats_controls": [beats.get(m) for m in table.columns]},
                        index=table.columns)


def rank_text(best: float, worst: float) -> str:
    """"#2" or "#2-4" (empty for an unranked column)."""
    if pd.isna(best):
        return ""
    worst = best if pd.isna(worst) else worst
    return f"#{int(best)}" if worst == best else f"#{int(best)}-{int(worst)}"


# -- chance ------------------------------------------------------------------------------------


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials."""
    if n <= 0 or not np.isfinite(p):
        return float("nan"), float("nan")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def chance_columns(models: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """``models`` (with ``accuracy`` on the test labels) plus ``accuracy_ci_low``/``_high`` (95%
    Wilson interval over the test images), ``chance`` (the majority-class rate of the test
    labels) and ``above_chance`` (the interval lies above the chance rate)."""
    labels = np.asarray(labels)
    n = len(labels)
    chance = float(np.bincount(labels).max() / n) if n else float("nan")
    out = models.copy()
    ci = [wilson_interval(float(a), n) for a in out["accuracy"]]
    out["accuracy_ci_low"] = [lo for lo, _ in ci]
    out["accuracy_ci_high"] = [hi for _, hi in ci]
    out["chance"] = chance
    out["above_chance"] = [bool(lo > chance) for lo, _ in ci]
    return out
