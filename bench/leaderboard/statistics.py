"""The leaderboard's statistics: per-image scores to means, 95% bootstrap confidence intervals and
paired-test rank intervals per (model, method, metric) (:mod:`xaibench.leaderboard.ranking`);
the bands of the curve plots."""

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


MODEL_COLUMNS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "chance", "above_chance")


def metric_stats(values: np.ndarray, metric: str, higher_is_better: bool | None, *, n_boot: int,
                 seed: int) -> dict:
    """The leaderboard's columns for one metric of one (model, method): mean, 95% CI, n, direction."""
    v = values[np.isfinite(values)]  # NaN: the metric is undefined on that image (e.g. empty mask)
    lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {f"{metric}_mean": float(v.mean()) if len(v) else float("nan"),
            f"{metric}_ci_low": lo, f"{metric}_ci_high": hi, f"{metric}_n": len(v),
            f"{metric}_direction": direction(higher_is_better)}


def add_evidence(board: pd.DataFrame, scores: pd.DataFrame, metric: str, controls: list[str]) -> None:
    """Fill ``<metric>_rank``, ``_rank_worst`` and ``_beats_controls`` of ``board`` in place from
    paired tests on each model's per-image scores (:func:`xaibench.leaderboard.ranking.evidence`)."""
    board[f"{metric}_rank"] = board[f"{metric}_rank_worst"] = float("nan")
    board[f"{metric}_beats_controls"] = None
    directions = set(board[f"{metric}_direction"])
    if directions == {"none"}:
        return
    part = scores[scores["metric"] == metric]
    for model, g in part.groupby("model", sort=False):
        table = g.pivot(index="index", columns="method", values="value")
        out = ranking.evidence(table, [c for c in controls if c in table.columns],
                               higher=directions == {"higher"})
        rows = board.index[board["model"] == model]
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
    rows = []
    for (model, method), group in scores.groupby(["model", "method"], sort=False):
        row = {"dataset": dataset, "model": model, "method": method, "control": method in controls,
               "n": int(group["index"].nunique())}
        for metric, g in group.groupby("metric", sort=False):
            row.update(metric_stats(g.sort_values("index")["value"].to_numpy(), metric,
                                    g["higher_is_better"].iloc[0], n_boot=n_boot, seed=seed))
        rows.append(row)
    present = [c for c in MODEL_COLUMNS if c in models.columns]
    board = pd.DataFrame(rows).merge(models[["model", *present]], on="model", how="left")
    for column in MODEL_COLUMNS:
        board[column] = board[column] if column in board else None
    metrics = list(dict.fromkeys(scores["metric"]))
    for metric in metrics:
        board[f"{metric}_family"] = (families or {}).get(metric)
        add_evidence(board, scores, metric, list(controls))
    ranked = [m for m in metrics if set(board[f"{m}_direction"]) != {"none"}]
    board["mean_rank"] = pd.concat([(board[f"{m}_rank"] + board[f"{m}_rank_worst"]) / 2
                                    for m in ranked], axis=1).mean(1) if ranked else float("nan")
    first = ["dataset", "model", "method", "control", *MODEL_COLUMNS, "n", "mean_rank"]
    board = with_families(board[first + [f"{m}_{c}" for m in metrics for c in METRIC_COLUMNS]])
    return board.sort_values(["model", "family_rank", "mean_rank", "method"], kind="stable")


METRIC_COLUMNS = ("mean", "ci_low", "ci_high", "n", "direction", "family", "rank", "rank_worst",
                  "beats_controls")


def curve_summary(data: pd.DataFrame, x: str, y: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean of ``y`` over images per (model, method, ``x``) with the leaderboard's 95% percentile
    bootstrap interval (:func:`bootstrap_ci`, same seed): the bands the curve plots draw.

    Returns:
        columns model, method, ``x``, mean, ci_low, ci_high.
    """
    rows = []
    for (model, method, at), g in data.groupby(["model", "method", x], sort=False):
        v = g[y].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
        rows.append({"model": model, "method": method, x: at,
                     "mean": float(v.mean()) if len(v) else float("nan"), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["model", "method", x, "mean", "ci_low", "ci_high"])
