"""Leaderboard tables: per-image scores -> means, bootstrap confidence intervals and ranks;
costs; the agreement between metrics; merging several runs."""

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


def score_frames(model_id: str, method_id: str, metric_id: str, plugin: str, metric: object,
                 scores: dict[str, torch.Tensor]) -> list[pd.DataFrame]:
    """Long-format score rows of one metric: the score keyed by the plugin's name becomes column
    ``<metric_id>``, any other key ``<metric_id>_<key>``, each with its own direction."""
    return [long_scores(model_id, method_id, metric_id if key == plugin else f"{metric_id}_{key}",
                        values, metric.direction(key))  # type: ignore[attr-defined]
            for key, values in scores.items()]


def cost_row(stage: str, model: str, method: str, metric: str, cost: dict, n_images: int,
             declared_passes: int | None = None) -> dict:
    """One row of costs.csv: a cell's seconds and forward passes per image (counted), its peak
    memory, and for explain cells the passes per image the method declares (None: unknown)."""
    return {"stage": stage, "model": model, "method": method, "metric": metric,
            "seconds_per_image": cost["seconds"] / n_images,
            "forwards_per_image": cost["forwards"] / n_images, "peak_mem_mb": cost["peak_mem_mb"],
            "declared_passes_per_image": declared_passes}


def cost_summary(costs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method): seconds and forward passes per image to explain and to score (all
    metrics together), and the peak memory of either stage."""
    def side(stage: str) -> pd.DataFrame:
        part = costs[costs["stage"] == stage].groupby(["model", "method"], sort=False)
        return part.agg(**{f"{stage}_s_per_image": ("seconds_per_image", "sum"),
                           f"{stage}_forwards_per_image": ("forwards_per_image", "sum"),
                           f"{stage}_peak_mem_mb": ("peak_mem_mb", "max")})
    return side("explain").join(side("score"), how="outer").reset_index()


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
              seed: int, controls: list[str] = ()) -> pd.DataFrame:  # type: ignore[assignment]
    """One row per (model, method): accuracy, n, whether the method is a control (a map that
    ignores the model: random, sobel, center), and per metric mean, 95% CI, the number of images
    it is defined on, direction and rank.

    Rank 1 is the best method on that model for that metric (ties share the lower rank);
    ``mean_rank`` averages a method's ranks over the metrics. Informational columns (direction
    "none") get no rank and stay out of ``mean_rank``.
    """
    rows = []
    for (model, method), group in scores.groupby(["model", "method"], sort=False):
        row = {"dataset": dataset, "model": model, "method": method, "control": method in controls}
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
    first = ["dataset", "model", "method", "control", "accuracy", "n", "mean_rank"]
    ordered = first + [c for m in metrics for c in
                       (f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high", f"{m}_n", f"{m}_direction", f"{m}_rank")]
    return board[ordered].sort_values(["model", "mean_rank", "method"], kind="stable")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    write_csv(path, pd.DataFrame(history))


def score_table(scores: list[pd.DataFrame], dataset: str, labels: torch.Tensor) -> pd.DataFrame:
    """The per-image scores of every score cell as one table (scores.csv), with the dataset and
    each image's label."""
    frame = pd.concat(scores, ignore_index=True)
    frame.insert(0, "dataset", dataset)
    frame["label"] = labels.numpy()[frame["index"].to_numpy()]
    return frame


def write_outputs(
    run_dir: Path,
    *,
    dataset: str,
    models: list[dict],
    scores: list[pd.DataFrame],
    curves: list[pd.DataFrame],
    costs: list[dict],
    labels: torch.Tensor,
    controls: list[str],
    bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """Write leaderboard.csv, scores.csv, curves.csv, costs.csv and models.csv; return the board."""
    model_frame = pd.DataFrame(models)
    score_frame = score_table(scores, dataset, labels)
    board = summarise(score_frame, model_frame, dataset=dataset, n_boot=bootstrap, seed=seed,
                      controls=controls)
    write_csv(run_dir / "leaderboard.csv", board)
    write_csv(run_dir / "scores.csv", score_frame)
    write_csv(run_dir / "models.csv", model_frame)
    write_csv(run_dir / "costs.csv", pd.DataFrame(costs))
    if curves:
        write_csv(run_dir / "curves.csv", pd.concat(curves, ignore_index=True))
    return board


# -- metric agreement and merged runs --------------------------------------------------------------


def ranked_metrics(board: pd.DataFrame) -> list[str]:
    """The metric columns of a leaderboard that are ranked (direction higher or lower)."""
    return [c[: -len("_direction")] for c in board.columns if c.endswith("_direction")
            and set(board[c].dropna()) & {"higher", "lower"}]


def agreement(board: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between the method rankings that each pair of metrics induces.

    For each (dataset, model[, run]) group, every metric orders the methods by its mean (sign
    flipped for lower-is-better metrics, so that tau = 1 means the two metrics agree on which
    method is better); tau is averaged over the groups where both metrics rank at least three
    methods. Returns a square DataFrame indexed by metric (NaN where no group qualifies).
    """
    from scipy.stats import kendalltau

    metrics = ranked_metrics(board)
    keys = [k for k in ("run", "dataset", "model") if k in board]
    taus = {(a, b): [] for a in metrics for b in metrics}
    for _, g in board.groupby(keys, sort=False):
        signed = {m: g[f"{m}_mean"] * (1 if (g[f"{m}_direction"] == "higher").all() else -1)
                  for m in metrics}
        for a in metrics:
            for b in metrics:
                ok = signed[a].notna() & signed[b].notna()
                if ok.sum() >= 3:
                    tau = kendalltau(signed[a][ok], signed[b][ok]).statistic
                    if np.isfinite(tau):
                        taus[a, b].append(tau)
    return pd.DataFrame([[np.mean(taus[a, b]) if taus[a, b] else np.nan for b in metrics]
                         for a in metrics], index=metrics, columns=metrics)


def merge_runs(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (dataset, model, method) over several runs' leaderboards (e.g. seeds or
    datasets): the number of runs, and the mean and standard deviation across runs of the test
    accuracy, the mean rank and every metric's mean; ranks recomputed on the merged means.

    Args:
        boards: run name -> that run's leaderboard.csv as a DataFrame.
    """
    frame = pd.concat([b.assign(run=name) for name, b in boards.items()], ignore_index=True)
    metrics = list(dict.fromkeys(c[: -len("_direction")] for c in frame.columns
                                 if c.endswith("_direction")))
    keys = ["dataset", "model", "method"]
    rows = []
    for key, g in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        row["control"] = bool(g["control"].any()) if "control" in g else False
        row["runs"] = g["run"].nunique()
        for col in ["accuracy", "mean_rank", *(f"{m}_mean" for m in metrics)]:
            base = col[: -len("_mean")] if col.endswith("_mean") and col != "mean_rank" else col
            row[f"{base}_mean"], row[f"{base}_std"] = g[col].mean(), g[col].std(ddof=1)
        for m in metrics:
            row[f"{m}_direction"] = g[f"{m}_direction"].iloc[0]
        rows.append(row)
    merged = pd.DataFrame(rows)
    for m in ranked_metrics(merged):
        higher = (merged[f"{m}_direction"] == "higher").all()
        merged[f"{m}_rank"] = merged.groupby(["dataset", "model"])[f"{m}_mean"].rank(
            ascending=not higher, method="min")
    return merged
