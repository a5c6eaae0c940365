"""A run folder's plots and its report.md, made from the files the run wrote.

Everything here reads the run folder (leaderboard.csv, scores.csv, curves.csv, costs.csv,
models.csv, manifest.json, gallery.pt), so ``xaibench plot KIND RUN`` re-creates any figure
without recomputing anything, and ``report.md`` can be rebuilt at any time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from xaibench import leaderboard as lb
from xaibench import plots, ranking
from xaibench.config import ConfigError
from xaibench.io import load_checked, write_text


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
    def controls(self) -> list[str]:
        """The methods that ignore the model (random, sobel, center)."""
        return list(self.manifest.get("controls", []))

    def metric_config(self) -> dict[str, dict]:
        """metric id -> its resolved config (with the plugin name)."""
        return self.manifest["config"]["metrics"]


def training_plots(run: RunFolder) -> list[Path]:
    """training/<model>.png from each training/<model>.csv the run wrote (trained models)."""
    written = []
    archs = {m: v.get("arch", "?") for m, v in run.manifest["config"]["models"].items()}
    for table in sorted((run.path / "training").glob("*.csv")):
        history = pd.read_csv(table)
        if len(history):
            path = table.with_suffix(".png")
            plots.training_curves(history, path, title=f"{table.stem} ({archs.get(table.stem, '?')})")
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
        summary = lb.curve_summary(part, "step", "value", n_boot=run.bootstrap, seed=seed)
        plots.mean_curves(summary, path, title=f"{run.dataset}: mean {curve} curve",
                          controls=run.controls)
        written.append(path)
    return written


def _aopc_ids(run: RunFolder) -> list[str]:
    return [m for m, c in run.metric_config().items() if c["plugin"] == "aopc"]


def aopc_steps_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """AOPC against the number of steps L, for every AOPC metric of the run."""
    if run.curves is None:
        return []
    written = []
    for metric_id in _aopc_ids(run):
        part = run.curves[run.curves["curve"] == f"{metric_id}_morf"]
        if len(part):
            path = out / f"{metric_id}_vs_steps.png"
            summary = lb.curve_summary(plots.aopc_by_steps(part), "L", "aopc", n_boot=run.bootstrap,
                                       seed=seed)
            plots.aopc_vs_steps(summary, path, title=f"{run.dataset}: {metric_id} against the "
                                f"number of MoRF steps L", controls=run.controls)
            written.append(path)
    return written


def aopc_grid_table(run: RunFolder) -> pd.DataFrame:
    """Mean AOPC per (model, method, substrate, patch size) over the run's AOPC metrics."""
    from xaibench.plugins import build
    from xaibench.registry import METRICS

    rows = []
    for metric_id in _aopc_ids(run):
        params = {k: v for k, v in run.metric_config()[metric_id].items() if k != "plugin"}
        metric = build(METRICS.get("aopc"), params)
        col = f"{metric_id}_mean"
        for _, r in run.board.iterrows():
            rows.append({"model": r["model"], "method": r["method"], "substrate": metric.substrate,
                         "patch_size": metric.patch_size, "aopc": r[col]})
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
    from xaibench.io import from_half

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


def pompom_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """POMPOM bars (share of the map outside the object; lower is better) per method and model,
    with the leaderboard's confidence intervals."""
    written = []
    for metric_id, c in run.metric_config().items():
        if c["plugin"] != "pompom" or f"{metric_id}_mean" not in run.board:
            continue
        part = run.board[["model", "method"]].assign(
            **{k: run.board[f"{metric_id}_{k}"] for k in ("mean", "ci_low", "ci_high")})
        path = out / f"{metric_id}_bars.png"
        plots.metric_bars(part, path, title=f"{run.dataset}: {metric_id} (lower is better)",
                          ylabel=metric_id)
        written.append(path)
    return written


def agreement_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Kendall tau between the rankings each metric induces (needs two ranked metrics and a
    model with at least ``lb.MIN_AGREEMENT_METHODS`` methods)."""
    matrix = lb.agreement(run.board)
    if not lb.agreement_shown(matrix):
        return []
    path = out / "metric_agreement.png"
    plots.agreement_heatmap(matrix, path, title=f"{run.dataset}: agreement between metrics",
                            methods=lb.agreement_methods(run.board))
    return [path]


def cost_quality_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Seconds per image to explain against the mean rank."""
    if run.costs is None or run.board["mean_rank"].isna().all():
        return []
    data = run.board.merge(lb.cost_summary(run.costs), on=["model", "method"])
    path = out / "cost_quality.png"
    plots.cost_quality(data, path, title=f"{run.dataset}: cost against quality")
    return [path]


def tradeoff_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """The activation / re-identification trade-off per model (Kwon et al. 2021 for the inverse
    method; a threshold sweep over every other method's map, our own protocol). Recomputes
    model forwards (and the inverse, when the run has it) from the run's cached data, models and
    attributions (read through the runner's own loaders), so it is drawn on request
    (``xaibench plot tradeoff RUN``), not by every run.
    """
    import torch

    from xaibench import config
    from xaibench.execute import load_data, load_model, method_of
    from xaibench.io import from_half
    from xaibench.plan import is_cached, plan
    from xaibench.tradeoff import plot_tradeoff, tradeoff_table

    m = run.manifest
    raw = {**m["raw_config"], "run": {**m["raw_config"].get("run", {}), "out": str(run.path.parent.parent)}}
    the_plan = plan(config.parse(raw, name=m["config_name"], source=m["config_source"]))
    missing = [c for c in the_plan.cells if c.kind in ("data", "model", "explain") and not is_cached(c)]
    if missing:
        raise ConfigError(f"the trade-off plot needs the run's cache, but {missing[0].path} is "
                          f"missing; run the config again to rebuild it")
    device = torch.device(the_plan.device)
    splits, _ = load_data(the_plan)
    images = splits.test.batch(slice(None), device)[0]
    tables, written = [], []
    for model_cell in the_plan.of_kind("model"):
        model = load_model(the_plan, model_cell, splits, device).model
        maps, targets, inverse, inverse_name = {}, None, None, "inverse"
        for cell in the_plan.below(model_cell, "explain"):
            shards = [load_checked(p) for p in sorted(cell.path.glob("[0-9]*.pt"))]
            maps[cell.parts[1]] = torch.cat([from_half(s) for s in shards]).to(device)
            targets = torch.cat([s["targets"] for s in shards]).to(device)
            if cell.record["method"]["plugin"] == "inverse":
                inverse, inverse_name = method_of(the_plan, cell), cell.parts[1]
        if targets is None:
            continue
        table = tradeoff_table(model, images, targets, maps, inverse=inverse, inverse_name=inverse_name)
        path = out / f"tradeoff_{model_cell.name}.png"
        plot_tradeoff(table, path, title=f"{run.dataset}, {model_cell.name}")
        tables.append(table.assign(model=model_cell.name))
        written.append(path)
    if tables:
        lb.write_csv(out / "tradeoff.csv", pd.concat(tables, ignore_index=True))
    return written


PLOTS: dict[str, Callable[[RunFolder, Path, int], list[Path]]] = {
    "curves": curve_plots,
    "aopc-steps": aopc_steps_plots,
    "aopc-grid": aopc_grid_plots,
    "gallery": gallery_plots,
    "pompom": pompom_plots,
    "agreement": agreement_plots,
    "cost": cost_quality_plots,
}


# drawn only on request: it recomputes model forwards (and the inverse method)
ON_REQUEST: dict[str, Callable[[RunFolder, Path, int], list[Path]]] = {"tradeoff": tradeoff_plots}


def make_plots(run: RunFolder, kinds: list[str], *, seed: int = 0) -> list[Path]:
    """Write the plots ``kinds`` (keys of PLOTS or ON_REQUEST) into <run>/plots/; returns the
    files written."""
    written = []
    for kind in kinds:
        written += {**PLOTS, **ON_REQUEST}[kind](run, run.path / "plots", seed)
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
    from the plugin's declared defaults, e.g. ``ig_white (integrated_gradients, baseline='white')``."""
    from xaibench.plugins import parameters
    from xaibench.registry import METHODS, RegistryError

    def plain(v: object) -> object:
        return json.loads(json.dumps(v, default=str))  # tuples as lists, like the manifest

    labels = {}
    for method_id, cfg in manifest["config"].get("methods", {}).items():
        try:
            defaults = {k: d for k, (_, d) in parameters(METHODS.get(cfg["plugin"])).items()}
        except RegistryError:  # a third-party plugin not installed here: show every parameter
            defaults = {}
        changed = [f"{k}={v!r}" for k, v in cfg.items() if k not in ("plugin", "models")
                   and (k not in defaults or plain(defaults[k]) != plain(v))]
        notes = ([cfg["plugin"]] if cfg["plugin"] != method_id else []) + changed
        labels[method_id] = method_id + (f" ({', '.join(notes)})" if notes else "")
    return labels


def metric_cell(board: pd.DataFrame, r: pd.Series, metric: str) -> str:
    """"mean [CI] #rank(s)", and ", not better than <control>" when the method does not beat the
    best control on that model."""
    text = (f"{r[f'{metric}_mean']:.3f} [{r[f'{metric}_ci_low']:.3f}, {r[f'{metric}_ci_high']:.3f}]")
    rank = ranking.rank_text(r.get(f"{metric}_rank"), r.get(f"{metric}_rank_worst", float("nan")))
    text += f" {rank}" if rank else ""
    if str(r.get(f"{metric}_beats_controls")) == "False":  # True/False/empty in the CSV
        rows = board[(board["model"] == r["model"]) & board["control"].astype(bool)]
        best = ranking.best_control(dict(zip(rows["method"], rows[f"{metric}_mean"])),
                                    higher=r[f"{metric}_direction"] == "higher")
        text += f", not better than {best}"
    return text


def summary_table(board: pd.DataFrame, costs: pd.DataFrame | None,
                  labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The leaderboard as people read it: per metric "mean [CI] #rank" (a range where methods are
    not significantly different) with the "not better than a control" flag, the mean rank, and
    beside it the cost per image to explain and to score."""
    metrics = lb.metric_names(board)
    labels = labels or {}
    rows = []
    cost = lb.cost_summary(costs).set_index(["model", "method"]) if costs is not None else None
    for _, r in board.iterrows():
        at_chance = str(r.get("above_chance")) == "False"
        row = {"model": r["model"] + (" (at chance)" if at_chance else ""),
               "method": labels.get(r["method"], r["method"]) + (" (control)" if r.get("control") else ""),
               "acc.": r["accuracy"], "mean rank": r["mean_rank"]}
        for m in metrics:
            arrow = {"higher": " ↑", "lower": " ↓"}.get(r[f"{m}_direction"], "")
            row[m + arrow] = metric_cell(board, r, m)
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
    "significantly different share ranks. The mean rank averages the midpoints of these ranges. "
    "Controls ignore the model (random, edges, centre): a method should beat them; \"not better "
    "than X\" marks a method that is not significantly better than the best control X on that "
    "metric (a better mean and a one-sided Wilcoxon signed-rank test, Holm over the methods). "
    "Parameters that differ from a method's defaults are shown beside its name. Costs are "
    "measured in this run on this device and vary between runs.")


def agreement_parts(board: pd.DataFrame) -> list[str]:
    """The report's metric-agreement section: the matrix with the number of methods per cell, or
    a line saying why it is left out."""
    matrix = lb.agreement(board)
    if len(matrix) < 2:
        return []
    if not lb.agreement_shown(matrix):
        return ["## Agreement between metrics",
                f"Left out: no model has at least {lb.MIN_AGREEMENT_METHODS} methods scored on two "
                f"metrics (Kendall tau from 3 methods can only be ±1/3 or ±1)."]
    methods = lb.agreement_methods(board)
    cells = pd.DataFrame([[("" if pd.isna(t) else f"{t:.2f} (n={n})") for t, n in zip(row, methods.loc[a])]
                          for a, row in matrix.iterrows()], index=matrix.index, columns=matrix.columns)
    return ["## Agreement between metrics",
            f"Kendall tau between the method rankings each pair of metrics induces (averaged over "
            f"models with at least {lb.MIN_AGREEMENT_METHODS} methods; 1 = same order; n = the "
            f"number of methods compared per model).",
            markdown_table(cells.reset_index(names="metric"))]


def render(run_dir: Path, *, seed: int = 0) -> Path:
    """Write every plot and report.md into ``run_dir``; returns the report's path."""
    run = RunFolder(run_dir)
    figures = make_plots(run, list(PLOTS), seed=seed)
    figures += sorted((run.path / "plots").glob("tradeoff_*.png"))  # drawn earlier on request
    m = run.manifest
    models = run.csv("models.csv")
    parts = [f"# xaibench report: {m['config_name']} on {run.dataset}", *chance_warnings(run.board),
             f"Run `{m['run_id']}` (config `{m['config_source']}`, seed {m['seed']}, {m['n_test']} "
             f"test images, device {m['device']} ({m['device_name']}), xaibench "
             f"{m['versions'].get('xaibench', '?')}, torch {m['versions'].get('torch', '?')}). Re-create "
             f"with `xaibench run {m['config_source']} --seed {m['seed']}`.",
             "## Leaderboard", RANKING_RULE,
             markdown_table(summary_table(run.board, run.costs, method_labels(m)))]
    if models is not None:
        parts += ["## Models", markdown_table(models)]
    parts += agreement_parts(run.board)
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
