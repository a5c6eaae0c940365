"""Which leaderboard columns pass the meta-evaluation: the one definition of the thresholds, read
by the run's writer (the ``<metric>_trusted`` columns of leaderboard.csv and the ranks from the
passing metrics alone) and by the report (its verdict table and the marks on the metric columns).

A metric passes on a model when none of its meta-evaluation figures (meta.csv) is below its
threshold:

- MC < ``MC_MIN`` (0.5): a metric whose scores never move scores exactly 0.5 (MetaQuantus's
  Estimator_Same: resilience 1, adversary 0); below that it is less consistent than a metric
  that ignores the perturbations altogether. An undecided MC (no prediction flipped under an
  adversary test) does not pass either: the metric was not shown to react to a disruption.
- Krippendorff's alpha < ``ALPHA_MIN`` (0.667): Krippendorff's lowest acceptable value for
  drawing even tentative conclusions; below it the images disagree on the methods' order too
  often for the mean's ranking to stand for the images.
- rank stability (mean Kendall tau between the settings of its knobs) < ``STABILITY_MIN`` (0.5):
  fewer than three in four pairs of methods keep their order when a knob changes.

The meta-evaluation judges a metric's main score, whose leaderboard column is the metric's id
(``aopc``); its other columns (``aopc_lerf``) and the metrics left out of ``[meta] metrics`` get
no verdict.
"""

from __future__ import annotations

import pandas as pd

from xaibench.leaderboard.families import with_families

MC_MIN = 0.5
ALPHA_MIN = 0.667
STABILITY_MIN = 0.5


def concerns(row: pd.Series) -> list[str]:
    """Why a metric of meta.csv fails on its model (empty: it passes every threshold)."""
    out = []
    mc = row.get("mc", float("nan"))
    if pd.isna(mc):
        out.append("MC undecided (no prediction flipped under an adversary test)")
    elif mc < MC_MIN:
        out.append(f"MC {mc:.2f} < {MC_MIN}")
    if pd.notna(row.get("alpha")) and row["alpha"] < ALPHA_MIN:
        out.append(f"alpha {row['alpha']:.2f} < {ALPHA_MIN}")
    if pd.notna(row.get("stability")) and row["stability"] < STABILITY_MIN:
        out.append(f"rank stability {row['stability']:.2f} < {STABILITY_MIN}")
    return out


def passes(meta: pd.DataFrame) -> dict[tuple[str, str], bool]:
    """(model, metric) -> whether that metric passes on that model, for every row of meta.csv."""
    return {(str(r["model"]), str(r["metric"])): not concerns(r) for _, r in meta.iterrows()}


def with_verdicts(board: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """``board`` (a run's leaderboard) with ``<metric>_trusted`` after each metric's columns: True
    where the metric passes on the row's model, False where it fails, empty where it was not
    meta-evaluated; the per-family ranks from the passing metrics alone follow from those
    (:func:`xaibench.leaderboard.families.with_families`)."""
    verdicts = passes(meta)
    out = board.drop(columns=[c for c in board.columns if c.endswith("_trusted")])
    columns: dict[str, pd.Series] = {}
    for c in out.columns:  # each metric's _trusted column after its last column
        columns[c] = out[c]
        metric = c.removesuffix("_beats_controls")
        if c != metric and f"{metric}_direction" in out:
            columns[f"{metric}_trusted"] = pd.Series([verdicts.get((str(m), metric)) for m in out["model"]],
                                                     index=out.index, dtype=object)
    return with_families(pd.DataFrame(columns, index=out.index))


def failing_models(board: pd.DataFrame, metric: str) -> tuple[list[str], bool]:
    """(the models on which ``metric`` fails its meta-evaluation, whether it fails on every model
    that has a verdict) from a leaderboard's ``<metric>_trusted`` column; ([], False) without one."""
    if f"{metric}_trusted" not in board:
        return [], False
    flags = board[["model", f"{metric}_trusted"]].drop_duplicates("model")
    judged = flags[flags[f"{metric}_trusted"].astype(str).isin(["True", "False"])]
    failed = [str(m) for m in judged.loc[judged[f"{metric}_trusted"].astype(str) == "False", "model"]]
    return failed, bool(failed) and len(failed) == len(judged)
