"""The run's tables as rows: per-image scores and curves in long format (scores.csv, curves.csv),
costs (costs.csv), and the models, scores and ranked leaderboard frames a run writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from xaibench.leaderboard import ranking
from xaibench.leaderboard.statistics import summarise


def long_scores(model: str, method: str, metric: str, values: torch.Tensor,
                higher_is_better: bool | None) -> pd.DataFrame:
    """Per-image scores of one (model, method, metric) in long format.

    ``higher_is_better`` None marks an informational column: reported, never ranked.
    """
    return pd.DataFrame({"model": model, "method": method, "metric": metric,
                         "higher_is_better": higher_is_better,
                         "index": np.arange(len(values)), "value": values.numpy().astype(float)})


def with_seed(rows: pd.DataFrame | dict, seed: int) -> pd.DataFrame | dict:
    """``rows`` (a frame or one row) with a ``seed`` column right after ``model``: the training
    seed of the model they come from (runs with several seeds)."""
    if isinstance(rows, dict):
        items = list(rows.items())
        at = [k for k, _ in items].index("model") + 1
        return dict([*items[:at], ("seed", seed), *items[at:]])
    out = rows.copy()
    out.insert(list(out.columns).index("model") + 1, "seed", seed)
    return out


def long_curves(model: str, method: str, curve: str, values: torch.Tensor) -> pd.DataFrame:
    """Per-image curves [N, steps+1] of one (model, method) in long format."""
    n, s = values.shape
    return pd.DataFrame({"model": model, "method": method, "curve": curve,
                         "index": np.repeat(np.arange(n), s), "step": np.tile(np.arange(s), n),
                         "value": values.numpy().astype(float).ravel()})


def score_column(metric_id: str, plugin: str, key: str) -> str:
    """The leaderboard column of score ``key`` of metric ``metric_id``: the score keyed by the
    plugin's name is column ``<metric_id>``, any other key ``<metric_id>_<key>``."""
    return metric_id if key == plugin else f"{metric_id}_{key}"


def score_frames(model_id: str, method_id: str, metric_id: str, plugin: str, metric: object,
                 scores: dict[str, torch.Tensor]) -> list[pd.DataFrame]:
    """Long-format score rows of one metric, one column per score key (:func:`score_column`),
    each with its own direction."""
    return [long_scores(model_id, method_id, score_column(metric_id, plugin, key),
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
    metrics together), and the peak memory of either stage; with several training seeds (a
    ``seed`` column) the mean over the seeds' cells (the peak: the largest)."""
    if "seed" in costs.columns:
        costs = costs.groupby(["stage", "model", "method", "metric"], sort=False, dropna=False).agg(
            seconds_per_image=("seconds_per_image", "mean"),
            forwards_per_image=("forwards_per_image", "mean"),
            peak_mem_mb=("peak_mem_mb", "max")).reset_index()

    def side(stage: str) -> pd.DataFrame:
        part = costs[costs["stage"] == stage].groupby(["model", "method"], sort=False)
        return part.agg(**{f"{stage}_s_per_image": ("seconds_per_image", "sum"),
                           f"{stage}_forwards_per_image": ("forwards_per_image", "sum"),
                           f"{stage}_peak_mem_mb": ("peak_mem_mb", "max")})
    return side("explain").join(side("score"), how="outer").reset_index()


def score_table(scores: list[pd.DataFrame], dataset: str, labels: torch.Tensor) -> pd.DataFrame:
    """The per-image scores of every score cell as one table (scores.csv), with the dataset and
    each image's label."""
    frame = pd.concat(scores, ignore_index=True)
    frame.insert(0, "dataset", dataset)
    frame["label"] = labels.numpy()[frame["index"].to_numpy()]
    return frame


def tables(models: list[dict], scores: list[pd.DataFrame], labels: torch.Tensor, *, dataset: str,
           controls: list[str], bootstrap: int, seed: int,
           families: dict[str, str] | None = None) -> tuple[pd.DataFrame, ...]:
    """(models, scores, leaderboard) tables: the models with their accuracy interval and chance
    rate over ``labels`` (the test labels), every per-image score, and the ranked board
    (``families``: each metric column's family, see :func:`xaibench.leaderboard.statistics.summarise`)."""
    model_frame = ranking.chance_columns(pd.DataFrame(models), labels.numpy())
    score_frame = score_table(scores, dataset, labels)
    board = summarise(score_frame, model_frame, dataset=dataset, n_boot=bootstrap, seed=seed,
                      controls=controls, families=families)
    return model_frame, score_frame, board
