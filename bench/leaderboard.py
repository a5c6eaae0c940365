"""Leaderboard tables: per-image scores -> means, bootstrap confidence intervals and ranks;
costs; the agreement between metrics; merging several runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaibench import ranking
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
    paired tests on each model's per-image scores (:func:`xaibench.ranking.evidence`)."""
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
              seed: int, controls: list[str] = ()) -> pd.DataFrame:  # type: ignore[assignment]
    """One row per (model, method): the model's accuracy (with its 95% Wilson interval, the
    chance rate and ``above_chance`` when ``models`` has them, see
    :func:`xaibench.ranking.chance_columns`), n, whether the method is a control (a map that
    ignores the model: random, sobel, center), and per metric mean, 95% CI, the number of images
    it is defined on, direction, rank interval and whether it beats the best control.

    ``<metric>_rank`` is the best rank the method may take on that model and ``_rank_worst`` the
    worst, from paired tests (:mod:`xaibench.ranking`): methods not significantly different
    share ranks. ``mean_rank`` averages the midpoints (rank + rank_worst) / 2 over the ranked
    metrics (the usual average rank for ties). Informational columns (direction "none") get no
    rank and stay out of ``mean_rank``.
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
        add_evidence(board, scores, metric, list(controls))
    ranked = [m for m in metrics if set(board[f"{m}_direction"]) != {"none"}]
    board["mean_rank"] = pd.concat([(board[f"{m}_rank"] + board[f"{m}_rank_worst"]) / 2
                                    for m in ranked], axis=1).mean(1) if ranked else float("nan")
    first = ["dataset", "model", "method", "control", *MODEL_COLUMNS, "n", "mean_rank"]
    ordered = first + [f"{m}_{c}" for m in metrics for c in METRIC_COLUMNS]
    return board[ordered].sort_values(["model", "mean_rank", "method"], kind="stable")


METRIC_COLUMNS = ("mean", "ci_low", "ci_high", "n", "direction", "rank", "rank_worst", "beats_controls")


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


def tables(models: list[dict], scores: list[pd.DataFrame], labels: torch.Tensor, *, dataset: str,
           controls: list[str], bootstrap: int, seed: int) -> tuple[pd.DataFrame, ...]:
    """(models, scores, leaderboard) tables: the models with their accuracy interval and chance
    rate over ``labels`` (the test labels), every per-image score, and the ranked board."""
    model_frame = ranking.chance_columns(pd.DataFrame(models), labels.numpy())
    score_frame = score_table(scores, dataset, labels)
    board = summarise(score_frame, model_frame, dataset=dataset, n_boot=bootstrap, seed=seed,
                      controls=controls)
    return model_frame, score_frame, board


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
    """Write leaderboard.csv, scores.csv, curves.csv, costs.csv and models.csv (:func:`tables`);
    return the board."""
    model_frame, score_frame, board = tables(models, scores, labels, dataset=dataset, controls=controls,
                                             bootstrap=bootstrap, seed=seed)
    write_csv(run_dir / "leaderboard.csv", board)
    write_csv(run_dir / "scores.csv", score_frame)
    write_csv(run_dir / "models.csv", model_frame)
    write_csv(run_dir / "costs.csv", pd.DataFrame(costs))
    if curves:
        write_csv(run_dir / "curves.csv", pd.concat(curves, ignore_index=True))
    return board


# -- metric agreement and merged runs --------------------------------------------------------------


def metric_names(board: pd.DataFrame) -> list[str]:
    """The metrics of a leaderboard, in column order: every ``<metric>_direction`` column."""
    return [c[: -len("_direction")] for c in board.columns if c.endswith("_direction")]


def ranked_metrics(board: pd.DataFrame) -> list[str]:
    """The metric columns of a leaderboard that are ranked (direction higher or lower)."""
    return [m for m in metric_names(board) if set(board[f"{m}_direction"].dropna()) & {"higher", "lower"}]


MIN_AGREEMENT_METHODS = 4  # Kendall tau from 3 methods can only be +-1/3 or +-1


def agreement_cells(board: pd.DataFrame) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """(metric a, metric b) -> [(Kendall tau, number of methods)] over the (dataset, model[, run])
    groups where both metrics rank at least ``MIN_AGREEMENT_METHODS`` methods.

    Every metric orders the methods by its mean (sign flipped for lower-is-better metrics, so
    that tau = 1 means the two metrics agree on which method is better).
    """
    from scipy.stats import kendalltau

    metrics = ranked_metrics(board)
    keys = [k for k in ("run", "dataset", "model") if k in board]
    cells: dict[tuple[str, str], list[tuple[float, int]]] = {(a, b): [] for a in metrics for b in metrics}
    for _, g in board.groupby(keys, sort=False):
        signed = {m: g[f"{m}_mean"] * (1 if (g[f"{m}_direction"] == "higher").all() else -1)
                  for m in metrics}
        for a, b in cells:
            ok = signed[a].notna() & signed[b].notna()
            if ok.sum() >= MIN_AGREEMENT_METHODS:
                tau = kendalltau(signed[a][ok], signed[b][ok]).statistic
                if np.isfinite(tau):
                    cells[a, b].append((float(tau), int(ok.sum())))
    return cells


def agreement(board: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between the method rankings that each pair of metrics induces, averaged over
    the groups of :func:`agreement_cells`. Returns a square DataFrame indexed by metric (NaN where
    no group has at least ``MIN_AGREEMENT_METHODS`` methods)."""
    cells = agreement_cells(board)
    metrics = ranked_metrics(board)
    return pd.DataFrame([[np.mean([t for t, _ in cells[a, b]]) if cells[a, b] else np.nan
                          for b in metrics] for a in metrics], index=metrics, columns=metrics)


def agreement_methods(board: pd.DataFrame) -> pd.DataFrame:
    """The number of methods behind each cell of :func:`agreement`: "8", or "6-8" when the
    averaged groups differ ("" where the cell is empty)."""
    cells = agreement_cells(board)
    metrics = ranked_metrics(board)

    def text(found: list[tuple[float, int]]) -> str:
        ns = sorted({n for _, n in found})
        return "" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return pd.DataFrame([[text(cells[a, b]) for b in metrics] for a in metrics],
                        index=metrics, columns=metrics)


def agreement_shown(matrix: pd.DataFrame) -> bool:
    """Whether an agreement matrix is worth drawing: two metrics or more, and some pair of
    different metrics compared on at least ``MIN_AGREEMENT_METHODS`` methods."""
    off = ~np.eye(len(matrix), dtype=bool)
    return len(matrix) >= 2 and bool(np.isfinite(matrix.to_numpy(float)[off]).any())


def merge_runs(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (dataset, model, method) over several runs' leaderboards (e.g. seeds or
    datasets): the number of runs, and the mean and standard deviation across runs of the test
    accuracy, the mean rank and every metric's mean; ranks recomputed on the merged means.

    Args:
        boards: run name -> that run's leaderboard.csv as a DataFrame.
    """
    frame = pd.concat([b.assign(run=name) for name, b in boards.items()], ignore_index=True)
    metrics = metric_names(frame)
    keys = ["dataset", "model", "method"]
    rows = []
    for key, g in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        row["control"] = bool(g["control"].any()) if "control" in g else False
        row["runs"] = g["run"].nunique()
        if "above_chance" in g:
            row["above_chance"] = bool(g["above_chance"].eq(True).all())  # in every run
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


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, *, accuracy_tolerance: float = 0.05) -> pd.DataFrame:
    """Does run ``b`` reproduce run ``a``? One row per model (its test accuracy) and per (model,
    method, metric) of either leaderboard: both values, both confidence intervals and ``ok``.

    An accuracy is reproduced when the two differ by at most ``accuracy_tolerance``; a metric's
    mean when each run's mean lies inside the other run's confidence interval (symmetric, so the
    verdict does not depend on which run is given first). A row in one leaderboard only is not
    reproduced. This is the check of "a fresh machine gets the same picture": float summation
    order (threads, CPU, GPU) changes the trained weights slightly, not the conclusions.
    """
    keys = ["dataset", "model", "method"]
    joined = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"))
    accuracy = pd.concat([board.groupby(["dataset", "model"], sort=False)["accuracy"].first()
                          for board in (a, b)], axis=1, keys=["a", "b"])
    rows = [{"dataset": dataset, "model": model, "method": "", "quantity": "accuracy", "a": va, "b": vb,
             "ok": bool(abs(va - vb) <= accuracy_tolerance + 1e-12)}
            for (dataset, model), (va, vb) in accuracy.iterrows()]
    for m in sorted(set(metric_names(a)) | set(metric_names(b))):
        for _, r in joined.iterrows():
            va, vb = r.get(f"{m}_mean_a", np.nan), r.get(f"{m}_mean_b", np.nan)
            if pd.isna(va) and pd.isna(vb):
                continue
            lo_a, hi_a = r.get(f"{m}_ci_low_a", np.nan), r.get(f"{m}_ci_high_a", np.nan)
            lo_b, hi_b = r.get(f"{m}_ci_low_b", np.nan), r.get(f"{m}_ci_high_b", np.nan)
            eps = 1e-9 * max(1.0, np.nanmax(np.abs([va, vb])))  # one of the two is a number
            ok = bool(lo_a - eps <= vb <= hi_a + eps and lo_b - eps <= va <= hi_b + eps)
            rows.append({"dataset": r["dataset"], "model": r["model"], "method": r["method"],
                         "quantity": m, "a": va, "b": vb, "a_ci_low": lo_a, "a_ci_high": hi_a,
                         "b_ci_low": lo_b, "b_ci_high": hi_b, "ok": ok})
    return pd.DataFrame(rows)
