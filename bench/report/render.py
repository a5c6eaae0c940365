"""A run folder's plots and its report.md, made from the files the run wrote.

Everything here reads the run folder (leaderboard.csv, scores.csv, curves.csv, costs.csv,
models.csv, manifest.json, gallery.pt, plots/tradeoff.csv), so ``xaibench plot KIND RUN``
re-creates any figure without recomputing anything, and ``report.md`` can be rebuilt at any time.
What the report needs to know of the plugins (which figures a metric declares, a method's
parameters and defaults) is in the manifest; nothing here imports a plugin, a model or the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from xaibench.errors import ConfigError
from xaibench.io import from_half, load_checked, write_text
from xaibench.leaderboard import agreement as ag
from xaibench.leaderboard import families, ranking, trusted
from xaibench.leaderboard.statistics import curve_summary
from xaibench.leaderboard.tables import cost_summary
from xaibench.report import plots
from xaibench.report.figures import KINDS
from xaibench.report.trust import trust_parts


@dataclass
class RunFolder:
    """Lazy access to the files of one run folder."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        for name in ("leaderboard.csv", "manifest.json"):
            if not (self.path / name).is_file():
                raise ConfigError(f"{self.path} is not a finished run folder: {name} is missing; "
                                     f"pass a folder written by `xaibench run` (results/<dataset>/"
                                     f"<run-id>), or run the config again to finish it")

    def csv(self, name: str) -> pd.DataFrame | None:
        path = self.path / name
        return pd.read_csv(path) if path.is_file() else None

    @cached_property
    def board(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "leaderboard.csv")

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    @cached_property
    def scores(self) -> pd.DataFrame | None:
        return self.csv("scores.csv")

    @cached_property
    def curves(self) -> pd.DataFrame | None:
        return self.csv("curves.csv")

    @cached_property
    def costs(self) -> pd.DataFrame | None:
        return self.csv("costs.csv")

    @property
    def dataset(self) -> str:
        return str(self.board["dataset"].iloc[0])

    @property
    def bootstrap(self) -> int:
        """The run's bootstrap resamples (the leaderboard's; the plots' bands use the same)."""
        return int(self.manifest["config"]["run"].get("bootstrap", 1000))

    @property
    def seed(self) -> int:
        """The run's ``[run] seed`` (data and the bootstrap)."""
        return int(self.manifest.get("seed", 0))

    @property
    def seeds(self) -> list[int]:
        """The run's training seeds (``[run] seeds``; by default its seed alone)."""
        return list(self.manifest["config"]["run"].get("seeds") or [self.seed])

    @property
    def controls(self) -> list[str]:
        """The methods that ignore the model (random, sobel, center)."""
        return list(self.manifest.get("controls", []))

    def declaring(self, figure: str) -> list[str]:
        """The ids of the run's metrics that declare ``figure`` (``Metric.figures``, recorded in
        the manifest)."""
        return [m for m, d in self.manifest.get("metrics", {}).items() if figure in d["figures"]]

    def metric_params(self, metric_id: str) -> dict:
        """Every parameter of metric ``metric_id``, defaults included."""
        return self.manifest["metrics"][metric_id]["params"]


def training_plots(run: RunFolder) -> list[Path]:
    """training/<model>.png from each training/<model>.csv the run wrote (trained models)."""
    written = []
    archs = {m: v.get("arch", "?") for m, v in run.manifest["config"]["models"].items()}
    for table in sorted((run.path / "training").glob("*.csv")):
        history = pd.read_csv(table)
        if len(history):
            path = table.with_suffix(".png")  # <model>.csv, or <model>@<seed>.csv with several seeds
            arch = archs.get(table.stem.rpartition("@")[0] or table.stem, "?")
            plots.training_curves(history, path, title=f"{table.stem} ({arch})")
            written.append(path)
    return written


# -- one function per figure: (run, plots folder, seed) -> written files ---------------------------


def curve_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """The mean curve per method with its 95% bootstrap band (the leaderboard's bootstrap: same
    resamples and seed, computed once per step), for every curve the metrics wrote."""
    if run.curves is None:
        return []
    written = []
    for curve, part in run.curves.groupby("curve", sort=False):
        path = out / f"{curve}.png"
        summary = curve_summary(part, "step", "value", n_boot=run.bootstrap, seed=seed)
        plots.mean_curves(summary, path, title=f"{run.dataset}: mean {curve} curve",
                          controls=run.controls)
        written.append(path)
    return written


def aopc_steps_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """AOPC against the number of steps L, for every AOPC metric of the run."""
    if run.curves is None:
        return []
    written = []
    for metric_id in run.declaring("aopc-steps"):
        part = run.curves[run.curves["curve"] == f"{metric_id}_morf"]
        if len(part):
            path = out / f"{metric_id}_vs_steps.png"
            summary = curve_summary(plots.aopc_by_steps(part), "L", "value", n_boot=run.bootstrap,
                                       seed=seed)
            plots.aopc_vs_steps(summary, path, title=f"{run.dataset}: {metric_id} against the "
                                f"number of MoRF steps L", controls=run.controls)
            written.append(path)
    return written


def aopc_grid_table(run: RunFolder) -> pd.DataFrame:
    """Mean AOPC (column ``value``) per (model, method, substrate, patch size) over the run's
    metrics that declare the AOPC grid."""
    rows = []
    for metric_id in run.declaring("aopc-grid"):
        params, col = run.metric_params(metric_id), f"{metric_id}_mean"
        for _, r in run.board.iterrows():
            rows.append({"model": r["model"], "method": r["method"], "substrate": params["substrate"],
                         "patch_size": params["patch_size"], "value": r[col]})
    return pd.DataFrame(rows)


def aopc_grid_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """The xML paper's grid of AOPC over patch sizes x substrates (needs two or more AOPC
    metrics that differ in patch size or substrate, e.g. configs/aopc_grid.toml)."""
    grid = aopc_grid_table(run)
    if len(grid) == 0 or len(grid[["substrate", "patch_size"]].drop_duplicates()) < 2:
        return []
    path = out / "aopc_grid.png"
    plots.aopc_grid(grid, path, title=f"{run.dataset}: AOPC over patch sizes and substrates",
                    controls=run.controls)
    return [path]


def gallery_labels(gallery: dict, model: str) -> list[str]:
    """One row label per gallery image: its true class and, when the run stored it, the class
    ``model`` predicted."""
    names = gallery["class_names"]
    predicted = gallery.get("predictions", {}).get(model)
    labels = [f"true: {names[int(y)]}" for y in gallery["labels"]]
    if predicted is not None:
        labels = [f"{label}\npred: {names[int(p)]}" for label, p in zip(labels, predicted)]
    return labels


def gallery_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Test images from every class with their mask outline, true and predicted class, and one
    column per method, one figure per model."""
    gallery = load_checked(run.path / "gallery.pt")
    if gallery is None:
        return []
    masks = None if gallery["masks"] is None else gallery["masks"].numpy()
    written = []
    for model, maps in gallery["maps"].items():
        path = out / f"gallery_{model}.png"
        plots.gallery(gallery["images"].numpy(), masks,
                      {m: from_half(a).numpy() for m, a in maps.items()}, path,
                      title=f"{run.dataset}, {model}", row_labels=gallery_labels(gallery, model))
        written.append(path)
    return written


def bar_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Bars per method and model with the leaderboard's confidence intervals, for every metric
    that declares them (e.g. POMPOM: the share of the map outside the object)."""
    written = []
    for metric_id in run.declaring("bars"):
        if f"{metric_id}_mean" not in run.board:
            continue
        part = run.board[["model", "method"]].assign(
            **{k: run.board[f"{metric_id}_{k}"] for k in ("mean", "ci_low", "ci_high")})
        better = {"higher": "higher", "lower": "lower"}.get(str(run.board[f"{metric_id}_direction"].iloc[0]))
        path = out / f"{metric_id}_bars.png"
        means = seed_means(run.scores)
        points = None if means is None else means[means["metric"] == metric_id]
        plots.metric_bars(part, path, title=f"{run.dataset}: {metric_id}" + (
            f" ({better} is better)" if better else ""), ylabel=metric_id, points=points)
        written.append(path)
    return written


def seed_means(scores: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per (model, method, metric, seed) the mean of the finite per-image scores (column
    ``value``), from a run with several training seeds; None for a run with one."""
    if scores is None or "seed" not in scores.columns or scores["seed"].nunique() < 2:
        return None
    return (scores.groupby(["model", "method", "metric", "seed"], sort=False)["value"].mean()
            .reset_index())


def agreement_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Kendall tau between the rankings each metric induces (needs two ranked metrics and a
    model with at least ``ag.MIN_AGREEMENT_METHODS`` methods)."""
    matrix = ag.agreement(run.board)
    if not ag.agreement_shown(matrix):
        return []
    path = out / "metric_agreement.png"
    plots.agreement_heatmap(matrix, path, title=f"{run.dataset}: agreement between metrics",
                            methods=ag.agreement_methods(run.board))
    return [path]


def cost_quality_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Seconds per image to explain against the mean rank."""
    if run.costs is None or run.board["mean_rank"].isna().all():
        return []
    data = run.board.merge(cost_summary(run.costs), on=["model", "method"])
    path = out / "cost_quality.png"
    plots.cost_quality(data, path, title=f"{run.dataset}: cost against quality")
    return [path]


def tradeoff_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """The activation / re-identification trade-off per model, from ``plots/tradeoff.csv`` (written
    by ``xaibench plot tradeoff RUN``, which recomputes it from the run's cache:
    :func:`xaibench.run.replay.replay_tradeoff`)."""
    path = out / "tradeoff.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    written = []
    for model, part in table.groupby("model", sort=False):
        figure = out / f"tradeoff_{model}.png"
        plots.tradeoff(part, figure, title=f"{run.dataset}, {model}")
        written.append(figure)
    return written


PLOTS: dict[str, Callable[[RunFolder, Path, int], list[Path]]] = {
    "curves": curve_plots,
    "aopc-steps": aopc_steps_plots,
    "aopc-grid": aopc_grid_plots,
    "gallery": gallery_plots,
    "bars": bar_plots,
    "agreement": agreement_plots,
    "cost": cost_quality_plots,
    "tradeoff": tradeoff_plots,
}
assert list(PLOTS) == list(KINDS), "report.figures.KINDS and PLOTS name the same figures"


def make_plots(run: RunFolder, kinds: list[str], *, seed: int = 0) -> list[Path]:
    """Write the plots ``kinds`` (keys of PLOTS) into <run>/plots/; returns the files written."""
    written = []
    for kind in kinds:
        written += PLOTS[kind](run, run.path / "plots", seed)
    return written


# -- report.md --------------------------------------------------------------------------------------


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 3 decimals, empty cells for NaN)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3f}"
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "| " + " | ".join("---" for _ in frame.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def json_block(obj: object) -> str:
    """A fenced JSON code block."""
    return "```json\n" + json.dumps(obj, indent=2, sort_keys=True) + "\n```"


def method_labels(manifest: dict) -> dict[str, str]:
    """method id -> the id with its plugin (when the id differs) and the parameters that differ
    from the plugin's declared defaults (recorded in the manifest), e.g. ``ig_white
    (integrated_gradients, baseline='white')``."""
    labels = {}
    for method_id, m in manifest.get("methods", {}).items():
        changed = [f"{k}={m['params'][k]!r}" for k in sorted(m["changed"])]
        notes = ([m["plugin"]] if m["plugin"] != method_id else []) + changed
        labels[method_id] = method_id + (f" ({', '.join(notes)})" if notes else "")
    return labels


def metric_cell(board: pd.DataFrame, r: pd.Series, metric: str, per_seed: list[float] | None = None) -> str:
    """"mean [CI] #rank(s)", the per-seed means after it when ``per_seed`` has them ("; seeds
    0.412 / 0.388 / 0.405", in seed order), and ", not better than <control>" when the method
    does not beat the best control on that model."""
    text = (f"{r[f'{metric}_mean']:.3f} [{r[f'{metric}_ci_low']:.3f}, {r[f'{metric}_ci_high']:.3f}]")
    rank = ranking.rank_text(r.get(f"{metric}_rank"), r.get(f"{metric}_rank_worst", float("nan")))
    text += f" {rank}" if rank else ""
    if per_seed and len(per_seed) > 1:
        text += "; seeds " + " / ".join("-" if pd.isna(v) else f"{v:.3f}" for v in per_seed)
    if str(r.get(f"{metric}_beats_controls")) == "False":  # True/False/empty in the CSV
        rows = board[(board["model"] == r["model"]) & board["control"].astype(bool)]
        best = ranking.best_control(dict(zip(rows["method"], rows[f"{metric}_mean"])),
                                    higher=r[f"{metric}_direction"] == "higher")
        text += f", not better than {best}"
    return text


def family_cells(r: pd.Series, names: list[str]) -> dict[str, object]:
    """The report's family columns of one row: ``family rank`` (every family weighs the same) and
    per family in ``names`` its rank with the spread of its metrics' ranks ("2.50 (spread 1.00)":
    the rank midpoints span 1 place; no spread with a single ranked column); on a run with a
    meta-evaluation each followed by the rank from the metrics that pass it ("; passing: 3.00",
    "none" where no metric of the family passes)."""
    if "family_rank" not in r:  # a leaderboard written before families existed
        return {}
    judged = "family_rank_trusted" in r  # a run with a meta-evaluation: the ranks from passing metrics

    def passing(column: str) -> str:
        value = r.get(column, float("nan"))
        return "" if not judged else "; passing: " + ("none" if pd.isna(value) else f"{value:.2f}")

    cells: dict[str, object] = {"family rank": (f"{r['family_rank']:.2f}{passing('family_rank_trusted')}"
                                                if judged else r["family_rank"])}
    for family in names:
        rank, spread = r.get(f"rank_{family}", float("nan")), r.get(f"rank_{family}_spread", float("nan"))
        text = "" if pd.isna(rank) else f"{rank:.2f}" + ("" if pd.isna(spread) else f" (spread {spread:.2f})")
        cells[family] = text + (passing(f"rank_{family}_trusted") if text else "")
    return cells


def meta_mark(board: pd.DataFrame, metric: str) -> str:
    """" (fails meta)" after a metric's column header when it fails its meta-evaluation on every
    model that has a verdict, " (fails meta on <models>)" when on some; "" otherwise."""
    failed, everywhere = trusted.failing_models(board, metric)
    return "" if not failed else " (fails meta)" if everywhere else f" (fails meta on {', '.join(failed)})"


def method_label(r: pd.Series, labels: dict[str, str]) -> str:
    """A row's method as the report names it: with its non-default parameters, "(control)" for a
    control and "(model-independent)" where its maps are not shown to depend on the model."""
    label = labels.get(r["method"], r["method"]) + (" (control)" if r.get("control") else "")
    return label + (" (model-independent)" if families.flag(r.get("model_independent")) else "")


def summary_table(board: pd.DataFrame, costs: pd.DataFrame | None,
                  labels: dict[str, str] | None = None, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard as people read it, rows ordered by the family rank within each model: the
    family rank and per family the rank with its spread (:func:`family_cells`), the all-metrics
    mean rank, per metric "mean [CI] #rank" (a range where methods are not significantly
    different) with the "not better than a control" flag, and beside it the cost per image to
    explain and to score. With several training seeds (``scores`` with a ``seed`` column) each
    metric's cell lists the per-seed means and a column beside it the spread across seeds (the
    standard deviation of the per-seed means)."""
    metrics, names = ag.metric_names(board), families.family_names(board)
    means = seed_means(scores)
    per_seed = ({} if means is None else {k: list(g.sort_values("seed")["value"])
                                           for k, g in means.groupby(["model", "method", "metric"])})
    if "family_rank" in board:
        board = board.sort_values(["model", "family_rank", "mean_rank"], kind="stable")
    rows = []
    cost = cost_summary(costs).set_index(["model", "method"]) if costs is not None else None
    for _, r in board.iterrows():
        at_chance = str(r.get("above_chance")) == "False"
        row = {"model": r["model"] + (" (at chance)" if at_chance else ""),
               "method": method_label(r, labels or {}), "acc.": r["accuracy"],
               **family_cells(r, names), "mean rank (all metrics)": r["mean_rank"]}
        for m in metrics:
            arrow = {"higher": " ↑", "lower": " ↓"}.get(r[f"{m}_direction"], "")
            seeds_of = per_seed.get((r["model"], r["method"], m))
            row[m + arrow + meta_mark(board, m)] = metric_cell(board, r, m, seeds_of)
            if means is not None:
                row[f"{m}: spread across seeds"] = r.get(f"{m}_seed_std", float("nan"))
        if cost is not None and (r["model"], r["method"]) in cost.index:
            c = cost.loc[(r["model"], r["method"])]
            row["explain s/img"] = f"{c['explain_s_per_image']:.4f}"
            row["score s/img"] = f"{c['score_s_per_image']:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def chance_warnings(board: pd.DataFrame) -> list[str]:
    """One warning per model whose test accuracy is not above chance (its 95% interval reaches
    the majority-class rate of the test labels)."""
    if "above_chance" not in board:
        return []
    flagged = board[board["above_chance"].astype(str) == "False"].drop_duplicates("model")
    return [f"> **Warning: model `{r['model']}` is not above chance**: test accuracy "
            f"{r['accuracy']:.3f} (95% Wilson interval [{r['accuracy_ci_low']:.3f}, "
            f"{r['accuracy_ci_high']:.3f}]) against a majority-class rate of {r['chance']:.3f}; "
            f"rankings on this model are not meaningful." for _, r in flagged.iterrows()]


RANKING_RULE = (
    "Mean over test images with a 95% percentile-bootstrap confidence interval, and the method's "
    "rank (#) among the methods on that model; ↑ higher is better, ↓ lower is better. Ranks come "
    "from paired comparisons on the same images: for each model and metric every pair of methods "
    "is compared with a two-sided Wilcoxon signed-rank test of the per-image differences, "
    "Holm-corrected over the pairs (5% family-wise), and counted only when the test's direction "
    "agrees with the means'. \"#2-4\" means the method may rank anywhere "
    "from 2 to 4: one method is significantly better and k-4 significantly worse; methods not "
    "significantly different share ranks. Rows are ordered by the family rank: each metric "
    "measures one family of properties (faithfulness, robustness, randomisation, complexity, "
    "localisation); a family's rank is the mean of the midpoints of these ranges over its ranked "
    "columns, with the spread of those midpoints beside it (largest minus smallest: how far the "
    "family's metrics disagree on the method; none with a single column), and the family rank is "
    "the mean of the family ranks, so every family weighs the same however many metrics measure "
    "it. The mean rank (all metrics), secondary, averages the midpoints over every ranked "
    "column, so a family with many metrics weighs more. "
    "Controls ignore the model (random, edges, centre): a method should beat them; \"not better "
    "than X\" marks a method that is not significantly better than the best control X on that "
    "metric (a better mean and a one-sided Wilcoxon signed-rank test, Holm over the methods). "
    "\"(model-independent)\" marks a method that is not significantly better than the best control "
    "on any metric of the randomisation family: its maps are not shown to change when the "
    "model's weights are randomised, so they may not explain the model at all. "
    "Parameters that differ from a method's defaults are shown beside its name. Costs are "
    "measured in this run on this device and vary between runs.")


def meta_rule(board: pd.DataFrame) -> list[str]:
    """The leaderboard's note on the meta-evaluation's marks, on a run that has one."""
    if "family_rank_trusted" not in board:
        return []
    return [f"\"(fails meta)\" after a metric marks a column whose metric fails the run's "
            f"meta-evaluation on that model (MC < {trusted.MC_MIN} or undecided, Krippendorff's "
            f"alpha < {trusted.ALPHA_MIN}, or rank stability < {trusted.STABILITY_MIN}: see \"Which "
            f"metrics to trust on this run\" below). \"passing\" beside a family rank is the same "
            f"rank computed from the columns that pass alone (\"none\": no column of the family "
            f"passes on that model); columns the meta-evaluation did not judge count only in the "
            f"first rank."]


def agreement_parts(board: pd.DataFrame) -> list[str]:
    """The report's metric-agreement section: the matrix with the number of methods per cell, or
    a line saying why it is left out."""
    matrix = ag.agreement(board)
    if len(matrix) < 2:
        return []
    if not ag.agreement_shown(matrix):
        return ["## Agreement between metrics",
                f"Left out: no model has at least {ag.MIN_AGREEMENT_METHODS} methods scored on two "
                f"metrics (Kendall tau from 3 methods can only be ±1/3 or ±1)."]
    methods = ag.agreement_methods(board)
    cells = pd.DataFrame([[("" if pd.isna(t) else f"{t:.2f} (n={n})") for t, n in zip(row, methods.loc[a])]
                          for a, row in matrix.iterrows()], index=matrix.index, columns=matrix.columns)
    return ["## Agreement between metrics",
            f"Kendall tau between the method rankings each pair of metrics induces (averaged over "
            f"models with at least {ag.MIN_AGREEMENT_METHODS} methods; 1 = same order; n = the "
            f"number of methods compared per model).",
            markdown_table(cells.reset_index(names="metric"))]


def recreate(manifest: dict) -> str:
    """How to re-create the run: the command for a config, the call for ``xaibench.evaluate``."""
    if manifest["config_source"] == "xaibench.evaluate":
        return ("Re-create by calling `xaibench.evaluate` again with the same model, data and "
                "arguments (the resolved config is below and in `manifest.json`).")
    seeds = manifest["config"]["run"].get("seeds")
    return (f"Re-create with `xaibench run {manifest['config_source']} --seed {manifest['seed']}"
            + (f" --seeds {','.join(map(str, seeds))}" if seeds else "") + "`.")


SEEDS_RULE = (
    "Training seeds {seeds}: every trained model was trained once per seed and every method and "
    "metric ran on each seed's model. Means are over every (seed, image) pair; the 95% intervals "
    "come from a hierarchical bootstrap (the seeds resampled, then the images within each "
    "resampled seed), so they cover what training varies as well as what the test images vary; "
    "the paired tests behind the ranks compare methods on the same image of the same seed. Each "
    "cell lists the per-seed means after the interval, and the column beside it the spread "
    "across seeds (standard deviation of the per-seed means).")


def joint_claim_parts(run: RunFolder) -> list[str]:
    """The report's section on the xML paper's claim, from joint_claim.csv and
    joint_ordering.csv (written by runs with joint models and POMPOM on positives): the verdict,
    the ordering per seed and overall, and the readings per model and method."""
    claim, order = run.csv("joint_claim.csv"), run.csv("joint_ordering.csv")
    if claim is None or order is None:
        return []
    verdict = str(order["verdict"].dropna().iloc[-1]) if order["verdict"].notna().any() else ""
    flags = [c for c in order.columns if c.endswith("_post_hoc") and c.startswith(("hybrid_", "unsup"))]
    order = order.astype({c: float for c in ("hybrid", "unsupervised", "best_post_hoc")})
    claim = claim.astype({c: float for c in claim.columns
                          if c in ("pompom_positives", "mass", "mass_thresholded")})
    for c in [*flags, "hybrid_below_unsupervised", "ordering_holds"]:
        order[c] = order[c].map(lambda v: {"True": "yes", "False": "no"}.get(str(v), ""))
    shown = order.drop(columns="verdict").rename(columns={
        "hybrid": "hybrid's map", "unsupervised": "unsupervised's map", "best_post_hoc": "best post-hoc",
        "best_post_hoc_method": "which", "hybrid_below_unsupervised": "hybrid < unsup.",
        "hybrid_below_post_hoc": "hybrid < post-hoc", "unsupervised_below_post_hoc": "unsup. < post-hoc",
        "ordering_holds": "full ordering"})
    return ["## The joint explainer against post-hoc methods",
            f"**{verdict}**" if verdict else "",
            "POMPOM on the images with an object (↓: the share of the map outside it), per seed and "
            "over all seeds (`all`):",
            markdown_table(shown),
            "Each joint model's own map and every post-hoc method (controls left out): POMPOM on "
            "positives ↓, relevance mass in the object ↑, and the mass above the threshold ↑ "
            "(`joint_claim.csv`):",
            markdown_table(claim)]


def render(run_dir: Path, *, seed: int = 0) -> Path:
    """Write every plot and report.md into ``run_dir``; returns the report's path."""
    run = RunFolder(run_dir)
    figures = make_plots(run, list(PLOTS), seed=seed)
    m = run.manifest
    models = run.csv("models.csv")
    parts = [f"# xaibench report: {m['config_name']} on {run.dataset}", *chance_warnings(run.board),
             f"Run `{m['run_id']}` (config `{m['config_source']}`, seed {m['seed']}, {m['n_test']} "
             f"test images, device {m['device']} ({m['device_name']}), xaibench "
             f"{m['versions'].get('xaibench', '?')}, torch {m['versions'].get('torch', '?')}). "
             f"{recreate(m)}",
             "## Leaderboard", RANKING_RULE, *meta_rule(run.board),
             *([SEEDS_RULE.format(seeds=", ".join(map(str, run.seeds)))] if len(run.seeds) > 1 else []),
             markdown_table(summary_table(run.board, run.costs, method_labels(m), run.scores))]
    parts += joint_claim_parts(run)
    if models is not None:
        parts += ["## Models", markdown_table(models)]
    parts += agreement_parts(run.board)
    parts += [markdown_table(p) if isinstance(p, pd.DataFrame) else p for p in trust_parts(run.path)]
    if figures:
        parts.append("## Plots")
        parts += [f"![{f.stem}](plots/{f.name})" for f in figures]
    training = training_plots(run)
    if training:
        parts.append("## Training")
        parts += [f"![{f.stem}](training/{f.name})" for f in training]
    parts += ["## Files",
              "`leaderboard.csv` (all columns), `scores.csv` (every per-image score), `curves.csv` "
              "(per-image perturbation curves), `costs.csv` (seconds, forward passes and peak "
              "memory per cell), `models.csv`, `manifest.json` (resolved config, versions, "
              "timings, cells).",
              "## Config (resolved)", json_block(m["config"]),
              "## Manifest (excerpt; cells and costs in manifest.json and costs.csv)",
              json_block({k: m[k] for k in ("run_id", "seed", "device", "device_name",
                                            "torch_threads", "versions", "timings") if k in m})]
    path = run.path / "report.md"
    write_text(path, "\n\n".join(parts) + "\n")
    return path
