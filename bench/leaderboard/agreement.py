"""Agreement between metrics: Kendall tau between the method rankings each pair of metrics induces."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
