"""Leaderboard tables: per-image scores -> means, bootstrap confidence intervals and ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaibench.io import write_text


def long_scores(model: str, method: str, metric: str, values: torch.Tensor,
                higher_is_better: bool | None) -> pd.DataFrame:
    """Per-image scores of one (model, method, metric) in long format.

    ``higher_is_better`` None marks an informational column: reported, never ranked.
    """
    return pd.DataFrame({"model": model, "method": method, "metric": metric,
                         "higher_is_better": higher_is_better,
                         "index": np.arange(len(values)), "value": values.numpy().astype(float)})


def long_curves(model: str, method: str, curve: str, values: torch.Tensor) -> pd.DataFrame:
    """Per-image curves [N, steps+1] of one (model, method) in long format."""
    n, s = values.shape
    return pd.DataFrame({"model": model, "method": method, "curve": curve,
                         "index": np.repeat(np.arange(n), s), "step": np.tile(np.arange(s), n),
                         "value": values.numpy().astype(float).ravel()})


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


def summarise(scores: pd.DataFrame, models: pd.DataFrame, *, dataset: str, n_boot: int,
              seed: int) -> pd.DataFrame:
    """One row per (model, method): accuracy, n, and per metric mean, 95% CI, the number of images
    it is defined on, direction and rank.

    Rank 1 is the best method on that model for that metric (ties share the lower rank);
    ``mean_rank`` averages a method's ranks over the metrics. Informational columns (direction
    "none") get no rank and stay out of ``mean_rank``.
    """
    rows = []
    for (model, method), group in scores.groupby(["model", "method"], sort=False):
        row = {"dataset": dataset, "model": model, "method": method}
        row["n"] = int(group["index"].nunique())
        for metric, g in group.groupby("metric", sort=False):
            v = g.sort_values("index")["value"].to_numpy()
            v = v[np.isfinite(v)]  # NaN: the metric is undefined on that image (e.g. empty mask)
            lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            row[f"{metric}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = lo, hi
            row[f"{metric}_n"] = len(v)
            row[f"{metric}_direction"] = direction(g["higher_is_better"].iloc[0])
        rows.append(row)
    board = pd.DataFrame(rows)
    board = board.merge(models[["model", "accuracy"]], on="model", how="left")
    metrics = list(dict.fromkeys(scores["metric"]))
    ranked = []
    for metric in metrics:
        directions = set(board[f"{metric}_direction"])
        if directions == {"none"}:
            board[f"{metric}_rank"] = float("nan")
            continue
        higher = directions == {"higher"}
        board[f"{metric}_rank"] = board.groupby("model")[f"{metric}_mean"].rank(
            ascending=not higher, method="min")
        ranked.append(metric)
    board["mean_rank"] = board[[f"{m}_rank" for m in ranked]].mean(1)
    first = ["dataset", "model", "method", "accuracy", "n", "mean_rank"]
    ordered = first + [c for m in metrics for c in
                       (f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high", f"{m}_n", f"{m}_direction", f"{m}_rank")]
    return board[ordered].sort_values(["model", "mean_rank", "method"], kind="stable")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    write_csv(path, pd.DataFrame(history))


def write_outputs(
    run_dir: Path,
    *,
    dataset: str,
    models: list[dict],
    scores: list[pd.DataFrame],
    curves: list[pd.DataFrame],
    labels: torch.Tensor,
    bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """Write leaderboard.csv, scores.csv, curves.csv, models.csv and the plots; return the board."""
    from xaibench import plots

    model_frame = pd.DataFrame(models)
    score_frame = pd.concat(scores, ignore_index=True)
    score_frame.insert(0, "dataset", dataset)
    score_frame["label"] = labels.numpy()[score_frame["index"].to_numpy()]
    board = summarise(score_frame, model_frame, dataset=dataset, n_boot=bootstrap, seed=seed)
    write_csv(run_dir / "leaderboard.csv", board)
    write_csv(run_dir / "scores.csv", score_frame)
    write_csv(run_dir / "models.csv", model_frame.drop(columns=["checkpoint", "cached"]))
    if curves:
        curve_frame = pd.concat(curves, ignore_index=True)
        write_csv(run_dir / "curves.csv", curve_frame)
        for curve in curve_frame["curve"].unique():
            plots.mean_curves(curve_frame[curve_frame["curve"] == curve],
                              run_dir / f"{curve}_curve.png", title=f"{dataset}: mean {curve} curve",
                              seed=seed)
    return board
