"""Several runs at once: merging leaderboards (seeds, datasets) and checking that one run
reproduces another."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.leaderboard import ranking
from xaibench.leaderboard.agreement import metric_names, ranked_metrics
from xaibench.leaderboard.families import with_families


def merged_row(key: tuple, g: pd.DataFrame, metrics: list[str]) -> dict:
    """One (dataset, model, method)'s row of :func:`merge_runs` from its rows ``g`` in every run:
    the number of runs, whether it is a control and above chance in every run, the mean and
    standard deviation across runs of the accuracy, the mean rank and every metric's mean, and
    each metric's direction and family (as the first run that has it records them)."""
    row = dict(zip(["dataset", "model", "method"], key))
    row["control"] = bool(g["control"].any()) if "control" in g else False
    row["runs"] = g["run"].nunique()
    if "above_chance" in g:
        row["above_chance"] = bool(g["above_chance"].eq(True).all())  # in every run
    for col in ["accuracy", "mean_rank", *(f"{m}_mean" for m in metrics)]:
        base = col[: -len("_mean")] if col.endswith("_mean") and col != "mean_rank" else col
        row[f"{base}_mean"], row[f"{base}_std"] = g[col].mean(), g[col].std(ddof=1)
    for m in metrics:
        row[f"{m}_direction"] = g[f"{m}_direction"].iloc[0]
        family = g[f"{m}_family"].dropna() if f"{m}_family" in g else pd.Series(dtype=object)
        row[f"{m}_family"] = family.iloc[0] if len(family) else None
    return row


def merged_evidence(merged: pd.DataFrame, pooled: pd.DataFrame, controls: list[str]) -> None:
    """Fill ``<metric>_rank``, ``_rank_worst`` and ``_beats_controls`` of ``merged`` in place by
    the leaderboard's rule (:func:`xaibench.leaderboard.ranking.evidence`) on the pooled per-image
    scores of every run, with the (run, image) pairs as the paired samples."""
    for m in ranked_metrics(merged):
        merged[f"{m}_rank"] = merged[f"{m}_rank_worst"] = np.nan
        merged[f"{m}_beats_controls"] = None
        higher = (merged[f"{m}_direction"] == "higher").all()
        part = pooled[pooled["metric"] == m]
        for (dataset, model), g in part.groupby(["dataset", "model"], sort=False):
            table = g.pivot_table(index=["run", "index"], columns="method", values="value", dropna=False)
            out = ranking.evidence(table, [c for c in controls if c in table.columns], higher=higher)
            at = (merged["dataset"] == dataset) & (merged["model"] == model)
            methods = merged.loc[at, "method"]
            for column in ("rank", "rank_worst", "beats_controls"):
                merged.loc[at, f"{m}_{column}"] = out[column].reindex(methods).to_numpy()


def merge_runs(boards: dict[str, pd.DataFrame], scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (dataset, model, method) over several runs (e.g. seeds or datasets): the
    number of runs, the mean and standard deviation across runs of the test accuracy, the mean
    rank and every metric's mean (:func:`merged_row`); and ranks by the leaderboard's own rule
    (:func:`merged_evidence`: paired Wilcoxon tests, Holm-corrected), with the (run, image) pairs
    as the paired samples, so a method ranks ahead only when it is better on the same images of
    the same runs. From the merged ranks, as in a run's leaderboard: the per-family ranks,
    ``family_rank`` and ``model_independent``
    (:func:`xaibench.leaderboard.families.with_families`), and ``mean_rank``, the mean of the
    rank midpoints over all ranked metrics. Rows in the runs' order of (dataset, model), each
    model's methods by ``family_rank`` (ties: ``mean_rank``).

    Args:
        boards: run name -> that run's leaderboard.csv as a DataFrame.
        scores: run name -> that run's scores.csv (the per-image scores behind the board).
    """
    frame = pd.concat([b.assign(run=name) for name, b in boards.items()], ignore_index=True)
    metrics = metric_names(frame)
    merged = pd.DataFrame([merged_row(key, g, metrics)
                           for key, g in frame.groupby(["dataset", "model", "method"], sort=False)])
    pooled = pd.concat([s.assign(run=name) for name, s in scores.items()], ignore_index=True)
    controls = sorted(set(frame.loc[frame["control"].astype(bool), "method"])) if "control" in frame else []
    merged_evidence(merged, pooled, controls)
    ranked = ranked_metrics(merged)
    merged["mean_rank"] = (pd.concat([(merged[f"{m}_rank"] + merged[f"{m}_rank_worst"]) / 2 for m in ranked],
                                     axis=1).mean(1) if ranked else np.nan)
    merged = with_families(merged)
    group = merged.groupby(["dataset", "model"], sort=False).ngroup().rename("group")
    order = pd.concat([group, merged[["family_rank", "mean_rank", "method"]]], axis=1)
    return merged.loc[order.sort_values(["group", "family_rank", "mean_rank", "method"], kind="stable").index]


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
