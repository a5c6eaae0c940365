"""Ranks per family of metrics (faithfulness, robustness, randomisation, complexity, localisation),
as LATEC reports a rank per criterion with the metrics' disagreement beside it: a family that
many metrics measure (e.g. AOPC, deletion, insertion and ROAD for faithfulness) counts once in
the overall order, not once per metric.

Every function reads a leaderboard alone (a run's leaderboard.csv or merged runs): the family of
each metric column is in its ``<metric>_family`` column, written by the run from its metrics'
declared families; a column without one (a board written before families existed) is in no
family.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.leaderboard.agreement import ranked_metrics

RANDOMISATION = "randomisation"  # the family whose metrics test that a map depends on the model


def column_families(board: pd.DataFrame) -> dict[str, str]:
    """Ranked metric column -> its family, in column order (columns without a family left out)."""
    out = {}
    for metric in ranked_metrics(board):
        values = board.get(f"{metric}_family", pd.Series(dtype=object)).dropna().astype(str)
        values = values[values != ""]
        if len(values):
            out[metric] = str(values.iloc[0])
    return out


def family_names(board: pd.DataFrame) -> list[str]:
    """The families of the board's ranked columns, in the order their first column appears."""
    return list(dict.fromkeys(column_families(board).values()))


def midpoint(board: pd.DataFrame, metric: str) -> pd.Series:
    """The middle of a method's rank interval on ``metric``: (``_rank`` + ``_rank_worst``) / 2."""
    return (board[f"{metric}_rank"].astype(float) + board[f"{metric}_rank_worst"].astype(float)) / 2


def passing(board: pd.DataFrame, metric: str) -> pd.Series:
    """Per row: whether ``metric`` passes its meta-evaluation on the row's model
    (``<metric>_trusted`` True, see :mod:`xaibench.leaderboard.trusted`); False without a verdict."""
    column = board.get(f"{metric}_trusted", pd.Series(None, index=board.index, dtype=object))
    return column.map(flag).eq(True)


def judged(board: pd.DataFrame) -> bool:
    """Whether the board carries meta-evaluation verdicts (a ``_trusted`` column with a value)."""
    return any(board[c].map(flag).notna().any() for c in board.columns if c.endswith("_trusted"))


def rank_columns(board: pd.DataFrame, suffix: str = "", trusted_only: bool = False) -> pd.DataFrame:
    """``family_rank<suffix>``, ``rank_<family><suffix>`` and ``rank_<family><suffix>_spread``
    (see :func:`family_ranks`); with ``trusted_only`` from the passing columns alone."""
    families = column_families(board)
    out = pd.DataFrame(index=board.index)
    for family in dict.fromkeys(families.values()):
        mids = pd.concat([midpoint(board, m).where(passing(board, m)) if trusted_only else midpoint(board, m)
                          for m, f in families.items() if f == family], axis=1)
        out[f"rank_{family}{suffix}"] = mids.mean(axis=1)
        spread = mids.max(axis=1) - mids.min(axis=1)
        out[f"rank_{family}{suffix}_spread"] = spread.where(mids.notna().sum(axis=1) >= 2)
    ranks = [f"rank_{f}{suffix}" for f in dict.fromkeys(families.values())]
    out.insert(0, f"family_rank{suffix}", out[ranks].mean(axis=1) if ranks else np.nan)
    return out


def family_ranks(board: pd.DataFrame) -> pd.DataFrame:
    """Per row (model, method), indexed like ``board``: ``family_rank`` (the mean of the family
    ranks: every family weighs the same, however many columns it has), and per family
    ``rank_<family>`` (the mean of the rank midpoints of the family's ranked columns) and
    ``rank_<family>_spread`` (the largest minus the smallest of those midpoints: 0 when the
    family's metrics rank the method alike; NaN with fewer than two ranked columns). A column a
    method has no rank on (undefined on every image) is left out of its means.

    On a board with meta-evaluation verdicts (``<metric>_trusted``), the same from the columns
    that pass on the row's model alone: ``family_rank_trusted``, ``rank_<family>_trusted`` and
    ``rank_<family>_trusted_spread`` (NaN for a family none of whose columns passes)."""
    out = rank_columns(board)
    if judged(board):
        out = pd.concat([out, rank_columns(board, "_trusted", trusted_only=True)], axis=1)
    return out


def flag(value: object) -> bool | None:
    """A ``_beats_controls`` cell as read from a frame or a CSV: True, False or None (empty)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return {"True": True, "False": False}.get(str(value))


def model_independent(board: pd.DataFrame) -> pd.Series:
    """True where a method is significantly better than the best control on none of the ranked
    randomisation columns (``<metric>_beats_controls`` False on each that has a flag): its maps
    are not shown to depend on the model. False where it beats the controls on one of them;
    None (empty) without evidence: the controls themselves, a run without a control or without
    a ranked randomisation metric."""
    columns = [m for m, f in column_families(board).items()
               if f == RANDOMISATION and f"{m}_beats_controls" in board]

    def verdict(row: pd.Series) -> bool | None:
        flags = [f for f in (flag(row[f"{m}_beats_controls"]) for m in columns) if f is not None]
        return (not any(flags)) if flags else None

    return pd.Series([verdict(r) for _, r in board.iterrows()], index=board.index, dtype=object)


def with_families(board: pd.DataFrame) -> pd.DataFrame:
    """``board`` with :func:`family_ranks` and ``model_independent``, placed before ``mean_rank``
    (which stays as the secondary, all-metrics mean), replacing any such columns it had."""
    ranks = family_ranks(board)
    out = board.drop(columns=[c for c in board.columns if c in ranks or c == "model_independent"])
    at = list(out.columns).index("mean_rank") if "mean_rank" in out else len(out.columns)
    new = pd.concat([ranks, model_independent(board).rename("model_independent")], axis=1)
    return pd.concat([out.iloc[:, :at], new, out.iloc[:, at:]], axis=1)
