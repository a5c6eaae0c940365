"""The leaderboard's statistics: per-image scores to means, 95% bootstrap confidence intervals and
paired-test rank intervals per (model, method, metric) (:mod:`xaibench.leaderboard.ranking`);
the bands of the curve plots.

With several training seeds (a ``seed`` column in the scores) the mean is over every (seed,
image) pair and the interval comes from a hierarchical bootstrap (:func:`hierarchical_ci`: the
seeds resampled, then the images within each resampled seed), so it covers what the training
varies as well as what the test images vary; the paired tests compare methods on the same image
of the same seed. With one seed every number is the plain bootstrap's (:func:`bootstrap_ci`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.leaderboard import ranking
from xaibench.leaderboard.families import with_families


def direction(higher_is_better: bool | None) -> str:
    """The leaderboard's ``_direction`` value: "higher", "lower" or "none" (not ranked)."""
    if higher_is_better is None or pd.isna(higher_is_better):
        return "none"
    return "higher" if higher_is_better else "lower"


def bootstrap_ci(values: np.ndarray, *, n_boot: int, seed: int,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaN when fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def hierarchical_ci(units: list[np.ndarray], *, n_boot: int, seed: int,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the pooled mean over units (e.g. training seeds), each a sample of
    per-image values: every resample draws as many units as there are, with replacement, then
    within each drawn unit as many values as it has, with replacement, and takes the mean of all
    values drawn. Non-finite values and empty units are left out; with one unit left this is
    :func:`bootstrap_ci` of its values (same generator draws, same numbers).

    Args:
        units: one 1-D array of values per unit, in a fixed order (e.g. by seed).
    """
    units = [u[np.isfinite(u)] for u in (np.asarray(u, dtype=float) for u in units)]
    units = [u for u in units if len(u)]
    if len(units) <= 1:
        return bootstrap_ci(units[0] if units else np.zeros(0), n_boot=n_boot, seed=seed, level=level)
    rng = np.random.default_rng(seed)
    sizes = np.array([len(u) for u in units])
    padded = np.zeros((len(units), sizes.max()))
    for i, u in enumerate(units):
        padded[i, :len(u)] = u
    picked = rng.integers(0, len(units), size=(n_boot, len(units)))  # [B, S] the units drawn
    n = sizes[picked]
    chunk = max(1, 2_000_000 // padded.size)  # resamples per step, to bound the memory used
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        p, k = picked[start:start + chunk], n[start:start + chunk, :, None]
        drawn = rng.integers(0, k, size=(*p.shape, padded.shape[1]))  # [b, S, max size]
        kept = np.arange(padded.shape[1]) < k
        sums = np.where(kept, padded[p[..., None], drawn], 0.0).sum((1, 2))
        means[start:start + chunk] = sums / k[..., 0].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def by_unit(group: pd.DataFrame, unit: str | None, column: str = "value") -> list[np.ndarray]:
    """``column`` of ``group`` as one array per unit (sorted by unit, each in image order);
    one array of every row when ``unit`` is None."""
    if unit is None:
        return [group.sort_values("index")[column].to_numpy(dtype=float)]
    ordered = group.sort_values([unit, "index"])
    return [g[column].to_numpy(dtype=float) for _, g in ordered.groupby(unit, sort=True)]


def unit_column(scores: pd.DataFrame) -> str | None:
    """The column that tells training seeds apart ("seed"), or None for one-seed scores."""
    return "seed" if "seed" in scores.columns and scores["seed"].nunique() > 1 else None


MODEL_COLUMNS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "chance", "above_chance")


def metric_stats(values: list[np.ndarray], metric: str, higher_is_better: bool | None, *, n_boot: int,
                 seed: int) -> dict:
    """The leaderboard's columns for one metric of one (model, method) from its values per seed
    (one array with one seed): mean over every finite value, 95% CI (:func:`hierarchical_ci`),
    n, direction; with several seeds also ``<metric>_seed_std``, the standard deviation of the
    per-seed means."""
    v = np.concatenate([u[np.isfinite(u)] for u in values])  # NaN: undefined on that image
    lo, hi = hierarchical_ci(values, n_boot=n_boot, seed=seed)
    out = {f"{metric}_mean": float(v.mean()) if len(v) else float("nan"),
           f"{metric}_ci_low": lo, f"{metric}_ci_high": hi, f"{metric}_n": len(v),
           f"{metric}_direction": direction(higher_is_better)}
    if len(values) > 1:
        out[f"{metric}_seed_std"] = seed_spread(values)
    return out


def seed_spread(values: list[np.ndarray]) -> float:
    """Standard deviation (ddof 1) of the per-seed means of finite values (NaN with < 2 seeds)."""
    means = [float(u[np.isfinite(u)].mean()) for u in values if np.isfinite(u).any()]
    return float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")


def add_evidence(board: pd.DataFrame, scores: pd.DataFrame, metric: str, controls: list[str], *,
                 unit: str | None = None, by: tuple[str, ...] = ("model",)) -> None:
    """Fill ``<metric>_rank``, ``_rank_worst`` and ``_beats_controls`` of ``board`` in place from
    paired tests on each model's per-image scores (:func:`xaibench.leaderboard.ranking.evidence`);
    with a ``unit`` column (the seed) the pairs are (unit, image): blocked by unit, a method's
    score is compared with another's on the same image of the same seed. ``by``: the columns
    that name one model (and, for merged runs, its dataset)."""
    board[f"{metric}_rank"] = board[f"{metric}_rank_worst"] = float("nan")
    board[f"{metric}_beats_controls"] = None
    directions = set(board[f"{metric}_direction"])
    if directions == {"none"}:
        return
    part = scores[scores["metric"] == metric]
    for model, g in part.groupby(list(by), sort=False):
        table = g.pivot(index="index" if unit is None else [unit, "index"], columns="method", values="value")
        out = ranking.evidence(table, [c for c in controls if c in table.columns],
                               higher=directions == {"higher"})
        rows = board.index[(board[list(by)] == pd.Series(model, index=list(by))).all(axis=1)]
        methods = board.loc[rows, "method"]
        board.loc[rows, f"{metric}_rank"] = out["rank"].reindex(methods).to_numpy()
        board.loc[rows, f"{metric}_rank_worst"] = out["rank_worst"].reindex(methods).to_numpy()
        board.loc[rows, f"{metric}_beats_controls"] = out["beats_controls"].reindex(methods).to_numpy()


def summarise(scores: pd.DataFrame, models: pd.DataFrame, *, dataset: str, n_boot: int,
              seed: int, controls: list[str] = (),  # type: ignore[assignment]
              families: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (model, method): the model's accuracy (with its 95% Wilson interval, the
    chance rate and ``above_chance`` when ``models`` has them, see
    :func:`xaibench.leaderboard.ranking.chance_columns`), n, whether the method is a control (a map that
    ignores the model: random, sobel, center), and per metric mean, 95% CI, the number of images
    it is defined on, direction, rank interval and whether it beats the best control.

    With several training seeds (a ``seed`` column in ``scores`` with more than one value, and
    in ``models`` one row per model and seed) the means and intervals pool the (seed, image)
    pairs (:func:`hierarchical_ci`), ranks come from paired tests over those pairs, and the
    board gets ``seeds`` and per metric ``<metric>_seed_std`` (:func:`model_summary` for the
    accuracy columns).

    ``<metric>_rank`` is the best rank the method may take on that model and ``_rank_worst`` the
    worst, from paired tests (:mod:`xaibench.leaderboard.ranking`): methods not significantly different
    share ranks. ``mean_rank`` averages the midpoints (rank + rank_worst) / 2 over the ranked
    metrics (the usual average rank for ties). Informational columns (direction "none") get no
    rank and stay out of ``mean_rank``.

    ``families`` (metric column -> its metric's family, e.g. ``{"aopc": "faithfulness",
    "aopc_lerf": "faithfulness"}``) fills ``<metric>_family`` (empty for a column not in it);
    from those come the per-family ranks, ``family_rank`` (the rows' order within a model;
    ``mean_rank`` breaks its ties) and ``model_independent``
    (:func:`xaibench.leaderboard.families.with_families`).
    """
    unit = unit_column(scores)
    rows = [board_row(key, group, unit, dataset=dataset, controls=controls, n_boot=n_boot, seed=seed)
            for key, group in scores.groupby(["model", "method"], sort=False)]
    models = model_summary(models)
    present = [c for c in MODEL_COLUMNS if c in models.columns]
    board = pd.DataFrame(rows).merge(models[["model", *present]], on="model", how="left")
    for column in MODEL_COLUMNS:
        board[column] = board[column] if column in board else None
    metrics = list(dict.fromkeys(scores["metric"]))
    for metric in metrics:
        board[f"{metric}_family"] = (families or {}).get(metric)
        add_evidence(board, scores, metric, list(controls), unit=unit)
    ranked = [m for m in metrics if set(board[f"{m}_direction"]) != {"none"}]
    board["mean_rank"] = pd.concat([(board[f"{m}_rank"] + board[f"{m}_rank_worst"]) / 2
                                    for m in ranked], axis=1).mean(1) if ranked else float("nan")
    columns = [*METRIC_COLUMNS, *(("seed_std",) if unit else ())]
    first = ["dataset", "model", "method", "control", *MODEL_COLUMNS, "n", *(("seeds",) if unit else ()),
             "mean_rank"]
    board = with_families(board[first + [f"{m}_{c}" for m in metrics for c in columns]])
    return board.sort_values(["model", "family_rank", "mean_rank", "method"], kind="stable")


def board_row(key: tuple, group: pd.DataFrame, unit: str | None, *, dataset: str, controls: list[str],
              n_boot: int, seed: int) -> dict:
    """One (model, method)'s row of :func:`summarise` before the ranks: n (images, or (seed,
    image) pairs), the number of seeds, and every metric's :func:`metric_stats`."""
    model, method = key
    pairs = ["index"] if unit is None else [unit, "index"]
    row = {"dataset": dataset, "model": model, "method": method, "control": method in controls,
           "n": len(group[pairs].drop_duplicates())}
    if unit is not None:
        row["seeds"] = int(group[unit].nunique())
    for metric, g in group.groupby("metric", sort=False):
        row.update(metric_stats(by_unit(g, unit), metric, g["higher_is_better"].iloc[0],
                                n_boot=n_boot, seed=seed))
    return row


def model_summary(models: pd.DataFrame) -> pd.DataFrame:
    """One row per model: as given, or with several seeds (a ``seed`` column) the mean accuracy
    over the seeds, the interval from the lowest seed's lower bound to the highest seed's upper
    bound, and ``above_chance`` only when every seed's model is above chance."""
    if "seed" not in models.columns:
        return models
    aggregations = {"accuracy": "mean", "accuracy_ci_low": "min", "accuracy_ci_high": "max",
                    "chance": "first", "above_chance": "all"}
    present = {c: f for c, f in aggregations.items() if c in models.columns}
    return models.groupby("model", sort=False).agg(present).reset_index()


METRIC_COLUMNS = ("mean", "ci_low", "ci_high", "n", "direction", "family", "rank", "rank_worst",
                  "beats_controls")


def curve_summary(data: pd.DataFrame, x: str, y: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean of ``y`` over images per (model, method, ``x``) with the leaderboard's 95% percentile
    bootstrap interval (:func:`bootstrap_ci`, same seed; :func:`hierarchical_ci` over the seeds
    when ``data`` has a ``seed`` column with several seeds): the bands the curve plots draw.

    Returns:
        columns model, method, ``x``, mean, ci_low, ci_high.
    """
    rows, unit = [], unit_column(data)
    for (model, method, at), g in data.groupby(["model", "method", x], sort=False):
        units = [g[y].to_numpy(dtype=float)] if unit is None else [
            u[y].to_numpy(dtype=float) for _, u in g.sort_values([unit, "index"]).groupby(unit)]
        v = np.concatenate([u[np.isfinite(u)] for u in units])
        lo, hi = hierarchical_ci(units, n_boot=n_boot, seed=seed)
        rows.append({"model": model, "method": method, x: at,
                     "mean": float(v.mean()) if len(v) else float("nan"), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["model", "method", x, "mean", "ci_low", "ci_high"])
