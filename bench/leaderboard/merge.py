"""Several runs at once: merging leaderboards (seeds, datasets) and checking that one run
reproduces another."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.leaderboard import statistics
from xaibench.leaderboard.agreement import metric_names, ranked_metrics
from xaibench.leaderboard.families import with_families


def merged_row(key: tuple, g: pd.DataFrame) -> dict:
    """One (dataset, model, method)'s row of :func:`merge_runs` from its rows ``g`` in every run:
    the number of runs, whether it is a control and above chance in every run, and the mean and
    standard deviation across runs of the accuracy and the mean rank."""
    row = dict(zip(["dataset", "model", "method"], key))
    row["control"] = bool(g["control"].any()) if "control" in g else False
    row["runs"] = g["run"].nunique()
    if "above_chance" in g:
        row["above_chance"] = bool(g["above_chance"].eq(True).all())  # in every run
    for col in ("accuracy", "mean_rank"):
        row[f"{col}_mean"], row[f"{col}_std"] = g[col].mean(), g[col].std(ddof=1)
    return row


def metric_row(g: pd.DataFrame, metrics: list[str], boards: pd.DataFrame, *, n_boot: int,
               seed: int) -> dict:
    """One (dataset, model, method)'s metric columns from its pooled per-image scores ``g`` (with
    the ``unit`` column of :func:`pooled_scores`), by the rule of a run with several seeds
    (:func:`xaibench.leaderboard.statistics.metric_stats`): the mean over every (unit, image)
    pair, the hierarchical bootstrap's 95% interval, n, and ``<metric>_std``, the standard
    deviation of the units' means (with one-seed runs: of the runs' means); each metric's
    direction and family as the first run that has it records them."""
    row: dict = {}
    for m in metrics:
        values = g[g["metric"] == m]
        stats = statistics.metric_stats(statistics.by_unit(values, "unit"), m, None, n_boot=n_boot,
                                        seed=seed) if len(values) else {}
        row[f"{m}_mean"] = stats.get(f"{m}_mean", np.nan)
        units = statistics.by_unit(values, "unit") if len(values) else []
        row[f"{m}_std"] = statistics.seed_spread(units)
        for c in ("ci_low", "ci_high", "n"):
            row[f"{m}_{c}"] = stats.get(f"{m}_{c}", np.nan)
        row[f"{m}_direction"] = boards[f"{m}_direction"].dropna().iloc[0]
        family = boards[f"{m}_family"].dropna() if f"{m}_family" in boards else pd.Series(dtype=object)
        row[f"{m}_family"] = family.iloc[0] if len(family) else None
    return row


def pooled_scores(scores: dict[str, pd.DataFrame], seeds: dict[str, int]) -> pd.DataFrame:
    """Every run's per-image scores in one frame, with ``run`` and ``unit``: a number per (seed,
    run) in the order of the seeds, then of the runs as given, so that merging the one-seed
    runs of seeds 0, 1 and 2 lays the scores out as one run with seeds [0, 1, 2] does.
    ``seeds``: run -> its seed, for scores without a ``seed`` column (a one-seed run)."""
    frames = []
    for position, (name, s) in enumerate(scores.items()):
        seed = s["seed"] if "seed" in s.columns else seeds.get(name, 0)
        frames.append(s.assign(run=name, seed=seed, position=position))
    pooled = pd.concat(frames, ignore_index=True)
    units = pooled[["seed", "position"]].drop_duplicates().sort_values(["seed", "position"])
    number = {tuple(u): i for i, u in enumerate(units.itertuples(index=False))}
    pooled["unit"] = [number[u] for u in zip(pooled["seed"], pooled["position"])]
    return pooled.drop(columns="position")


def merge_runs(boards: dict[str, pd.DataFrame], scores: dict[str, pd.DataFrame], *,
               seeds: dict[str, int] | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, model, method) over several runs (e.g. seeds or datasets), by the
    statistics of one run with several training seeds, each (seed, run) a unit: every metric's
    mean over the (unit, image) pairs with the hierarchical bootstrap's 95% interval and the
    spread of the units' means (:func:`metric_row`), and ranks from the leaderboard's paired
    tests over those pairs, blocked by unit
    (:func:`xaibench.leaderboard.statistics.add_evidence`): so merging the one-seed runs of
    seeds 0, 1 and 2 gives the means, intervals and ranks of one run with seeds [0, 1, 2]. Also
    the number of runs and the mean and standard deviation across runs of the accuracy and the
    mean rank (:func:`merged_row`); from the merged ranks, as in a run's leaderboard: the
    per-family ranks, ``family_rank`` and ``model_independent``
    (:func:`xaibench.leaderboard.families.with_families`), and ``mean_rank``. Rows in the runs'
    order of (dataset, model), each model's methods by ``family_rank`` (ties: ``mean_rank``).

    Args:
        boards: run name -> that run's leaderboard.csv as a DataFrame.
        scores: run name -> that run's scores.csv (the per-image scores behind the board).
        seeds: run name -> its seed, for a run whose scores have no ``seed`` column.
        n_boot, seed: the bootstrap's resamples and seed (the runs' ``[run] bootstrap`` and ``seed``).
    """
    frame = pd.concat([b.assign(run=name) for name, b in boards.items()], ignore_index=True)
    metrics = metric_names(frame)
    pooled = pooled_scores(scores, seeds or {})
    by_row = dict(iter(pooled.groupby(["dataset", "model", "method"], sort=False)))
    merged = pd.DataFrame([{**merged_row(key, g), **metric_row(by_row.get(key, pooled.iloc[0:0]), metrics,
                                                               frame, n_boot=n_boot, seed=seed)}
                           for key, g in frame.groupby(["dataset", "model", "method"], sort=False)])
    controls = sorted(set(frame.loc[frame["control"].astype(bool), "method"])) if "control" in frame else []
    for m in ranked_metrics(merged):
        statistics.add_evidence(merged, pooled, m, controls, unit="unit", by=("dataset", "model"))
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
