"""The xML paper's claim on a run: the joint models' own maps against post-hoc methods.

The paper's ordering, on POMPOM over the images with an object (lower is better): the map of the
model trained with the hybrid loss < the map of the model trained unsupervised < every post-hoc
method (any model, controls left out). :func:`claim_tables` reads it off a run's per-image
scores, per training seed and over all of them (the leaderboard's pooled means), beside the
relevance mass in the object (raw, and above a threshold), and :func:`verdict` says in one
sentence what the numbers show. Pure pandas: the run writes the tables (joint_claim.csv,
joint_ordering.csv) and the report renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xaibench.leaderboard.statistics import by_unit

ALL = "all"  # the seed column's value for the readings over every seed
READINGS = ("pompom_positives", "mass", "mass_thresholded")
PARTS = ("hybrid_below_unsupervised", "hybrid_below_post_hoc", "unsupervised_below_post_hoc")


@dataclass(frozen=True)
class ClaimSetup:
    """What the claim is read from in a run.

    Attributes:
        joint_models: loss ("hybrid", "unsupervised") -> the id of the joint model trained with it.
        joint_methods: the ids of the methods that read a joint model's own map.
        post_hoc: the ids of the other methods that use the model (controls left out).
        metrics: reading ("pompom_positives", "mass", "mass_thresholded") -> its score column
            (``mass`` and ``mass_thresholded`` optional).
    """

    joint_models: dict[str, str]
    joint_methods: list[str]
    post_hoc: list[str]
    metrics: dict[str, str]


def _mean(values: list[np.ndarray]) -> float:
    v = np.concatenate([u[np.isfinite(u)] for u in values]) if values else np.zeros(0)
    return float(v.mean()) if len(v) else float("nan")


def readings(scores: pd.DataFrame, setup: ClaimSetup, seed: object) -> list[dict]:
    """One row per (model, method) in the claim: the joint maps of the joint models and every
    post-hoc method on every model, with the mean of each reading over the images of ``scores``
    (already restricted to one seed, or all of them pooled in (seed, image) order)."""
    unit = "seed" if "seed" in scores.columns else None
    columns = {column: reading for reading, column in setup.metrics.items()}
    part = scores[scores["metric"].isin(list(columns))]
    rows = []
    for (model, method), g in part.groupby(["model", "method"], sort=False):
        joint = method in setup.joint_methods and model in setup.joint_models.values()
        if not joint and method not in setup.post_hoc:
            continue
        row = {"seed": seed, "model": model, "method": method, "map": "joint" if joint else "post-hoc"}
        for column, m in g.groupby("metric", sort=False):
            row[columns[column]] = _mean(by_unit(m, unit))
        rows.append(row)
    return rows


def ordering_row(claim: pd.DataFrame, setup: ClaimSetup, seed: object) -> dict:
    """The ordering on POMPOM for one seed (or ``ALL``): both joint maps, the best post-hoc
    method, and whether each part of the ordering holds (None: a joint model is missing)."""
    def joint(loss: str) -> float:
        model = setup.joint_models.get(loss)
        hit = claim[(claim["model"] == model) & (claim["map"] == "joint")]
        return float(hit["pompom_positives"].iloc[0]) if len(hit) else float("nan")

    post = claim[claim["map"] == "post-hoc"].dropna(subset=["pompom_positives"])
    best = post.sort_values(["pompom_positives", "model", "method"], kind="stable").head(1)
    hybrid, unsup = joint("hybrid"), joint("unsupervised")
    best_value = float(best["pompom_positives"].iloc[0]) if len(best) else float("nan")

    def below(a: float, b: float) -> bool | None:
        return None if np.isnan(a) or np.isnan(b) else bool(a < b)

    parts = dict(zip(PARTS, (below(hybrid, unsup), below(hybrid, best_value), below(unsup, best_value))))
    which = f"{best['method'].iloc[0]} on {best['model'].iloc[0]}" if len(best) else ""
    return {"seed": seed, "hybrid": hybrid, "unsupervised": unsup, "best_post_hoc": best_value,
            "best_post_hoc_method": which,
            **parts, "ordering_holds": None if None in parts.values() else all(parts.values())}


def claim_tables(scores: pd.DataFrame, setup: ClaimSetup, *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(joint_claim.csv: per seed and over all seeds, each joint map and post-hoc method's mean
    POMPOM on positives and relevance mass, raw and thresholded; joint_ordering.csv: per seed and
    over all seeds the ordering's parts, with the :func:`verdict` on the last row).
    ``seed``: the run's seed, for scores without a ``seed`` column (one seed)."""
    seeds = sorted(scores["seed"].unique()) if "seed" in scores.columns else [seed]
    per_seed = ([(s, scores[scores["seed"] == s]) for s in seeds] if "seed" in scores.columns
                else [(seed, scores)])
    groups = [*per_seed, (ALL, scores)] if len(seeds) > 1 else per_seed
    claim = pd.DataFrame([r for s, part in groups for r in readings(part, setup, s)])
    claim = claim.reindex(columns=["seed", "model", "method", "map", *READINGS])
    order = pd.DataFrame([ordering_row(claim[claim["seed"] == s], setup, s) for s, _ in groups])
    order["verdict"] = ""
    order.loc[order.index[-1], "verdict"] = verdict(order, setup)
    return claim, order


def _failures(row: pd.Series, setup: ClaimSetup) -> list[str]:
    hybrid, unsup = setup.joint_models.get("hybrid"), setup.joint_models.get("unsupervised")
    best = f"the best post-hoc method ({row['best_post_hoc_method']}, {row['best_post_hoc']:.3f})"
    texts = {"hybrid_below_unsupervised": f"{hybrid}'s map ({row['hybrid']:.3f}) is not below "
                                          f"{unsup}'s ({row['unsupervised']:.3f})",
             "hybrid_below_post_hoc": f"{hybrid}'s map ({row['hybrid']:.3f}) is not below {best}",
             "unsupervised_below_post_hoc": f"{unsup}'s map ({row['unsupervised']:.3f}) is not "
                                            f"below {best}"}
    return [texts[p] for p in PARTS if _holds(row[p]) is False]


def _holds(flag: object) -> bool | None:
    """A flag of joint_ordering.csv as read from a frame or a CSV: True, False or None."""
    if flag is None or (isinstance(flag, float) and np.isnan(flag)):
        return None
    return {"True": True, "False": False}.get(str(flag), bool(flag))


def verdict(order: pd.DataFrame, setup: ClaimSetup) -> str:
    """One sentence on the paper's ordering from the rows of :func:`claim_tables` (the last row:
    all seeds, or the only seed), with how many seeds it holds on."""
    missing = [loss for loss in ("hybrid", "unsupervised") if loss not in setup.joint_models]
    if missing:
        return (f"The paper's ordering cannot be checked: the run has no joint model trained with "
                f"the {' or '.join(missing)} loss.")
    overall, seeds = order.iloc[-1], order.iloc[:-1] if len(order) > 1 else order.iloc[0:0]
    hybrid, unsup = setup.joint_models["hybrid"], setup.joint_models["unsupervised"]
    where = "Over every seed's test images" if len(seeds) else "On the test images"
    lead = (f"{where}, the paper's ordering ({hybrid}'s map < {unsup}'s map < every post-hoc "
            f"method on POMPOM on positives, lower is better)")
    if _holds(overall["ordering_holds"]) is None:
        return f"{lead} cannot be checked: a joint map or every post-hoc method lacks POMPOM scores."
    if _holds(overall["ordering_holds"]):
        text = (f"{lead} holds: {overall['hybrid']:.3f} < {overall['unsupervised']:.3f} < "
                f"{overall['best_post_hoc']:.3f} (best post-hoc method: {overall['best_post_hoc_method']})")
    else:
        text = f"{lead} does not hold: " + "; ".join(_failures(overall, setup))
    if len(seeds):
        held = [str(s) for s, h in zip(seeds["seed"], seeds["ordering_holds"]) if _holds(h)]
        text += (f". Seed by seed it holds on {len(held)} of {len(seeds)}"
                 + (f" (seed {', '.join(held)})" if held and len(held) < len(seeds) else ""))
    return text + "."
