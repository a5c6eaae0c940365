"""The report's "Which metrics to trust on this run" section, from meta.csv and
rank_stability.csv in the run folder (written when the config has [meta]).

A metric fails on a model when it crosses one of the thresholds of
:mod:`xaibench.leaderboard.trusted` (MC, Krippendorff's alpha, rank stability), the same
definition that marks the leaderboard's columns.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from xaibench.leaderboard.trusted import ALPHA_MIN, MC_MIN, STABILITY_MIN, concerns


def _fmt(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def trust_table(meta: pd.DataFrame) -> pd.DataFrame:
    """One row per model and metric: MC and its parts, alpha, stability and the verdict."""
    cols = ["mc", "iac_nr", "iac_ar", "iec_nr", "iec_ar", "alpha", "inter_method_rho", "stability"]
    rows = []
    for _, r in meta.iterrows():
        found = concerns(r)
        rows.append({"model": r["model"], "metric": r["metric"],
                     **{c: _fmt(r.get(c, float("nan"))) for c in cols},
                     "verdict": "passes" if not found else "fails: " + "; ".join(found)})
    return pd.DataFrame(rows)


def trust_plots(meta: pd.DataFrame, ranks: pd.DataFrame | None, out: Path) -> list[Path]:
    """meta-parts.png (MC's four parts per metric) and rank-stability.png (per metric, the share
    of the sweep's settings in which each method takes each rank)."""
    from xaibench.report.plots import plt, save

    paths = []
    parts = meta.set_index(meta["model"] + "/" + meta["metric"])[["iac_nr", "iac_ar", "iec_nr", "iec_ar"]]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(parts), 3))
    parts.astype(float).plot.bar(ax=ax, ylim=(0, 1), rot=30)
    ax.axhline(MC_MIN, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("score (1 = consistent)")
    paths.append(out / "meta-parts.png")
    save(fig, paths[-1])
    if ranks is not None and len(ranks):
        groups = list(ranks.groupby(["model", "metric"], sort=False))
        fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.8), squeeze=False)
        for ax, ((model, metric), g) in zip(axes[0], groups):
            grid = g.pivot(index="method", columns="rank", values="share")
            ax.imshow(grid.to_numpy(float), vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(grid.shape[1]), grid.columns)
            ax.set_yticks(range(grid.shape[0]), grid.index)
            ax.set_title(f"{model}/{metric}", fontsize=9)
            ax.set_xlabel("rank")
        paths.append(out / "rank-stability.png")
        save(fig, paths[-1])
    return paths


def trust_parts(run_dir: Path) -> list[str | pd.DataFrame]:
    """The report section (paragraphs, and the verdict table as a frame for the report's Markdown
    tables), or nothing when the run has no meta.csv."""
    run_dir = Path(run_dir)
    if not (run_dir / "meta.csv").is_file():
        return []
    meta = pd.read_csv(run_dir / "meta.csv")
    ranks_path = run_dir / "rank_stability.csv"
    ranks = pd.read_csv(ranks_path) if ranks_path.is_file() else None
    figures = trust_plots(meta, ranks, run_dir / "plots")
    return ["## Which metrics to trust on this run",
            f"MetaQuantus's meta-consistency (MC, in [0, 1]: the mean of the resilience and adversary "
            f"tests' intra- (IAC) and inter-consistency (IEC) on perturbed models and inputs), "
            f"Krippendorff's alpha of the images as raters of the methods' ranks, the mean Spearman "
            f"rho between methods' per-image scores, and the mean Kendall tau between the rankings "
            f"under the settings of the metric's knobs. A metric fails on a model when MC < {MC_MIN} "
            f"(or undecided), alpha < {ALPHA_MIN} or stability < {STABILITY_MIN} (see the docs' "
            f"Meta-evaluation page); the leaderboard marks its column \"(fails meta)\" and ranks "
            f"the methods a second time from the passing metrics alone (\"passing\").",
            trust_table(meta),
            *[f"![{f.stem}](plots/{f.name})" for f in figures]]
