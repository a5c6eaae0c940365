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
from xaibench import plots
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
    """The mean curve per method with a 95% band, for every curve the metrics wrote."""
    if run.curves is None:
        return []
    written = []
    for curve, part in run.curves.groupby("curve", sort=False):
        path = out / f"{curve}.png"
        plots.mean_curves(part, path, title=f"{run.dataset}: mean {curve} curve", seed=seed)
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
            plots.aopc_vs_steps(part, path, title=f"{run.dataset}: {metric_id} against the number "
                                f"of MoRF steps L", seed=seed)
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
    plots.aopc_grid(grid, path, title=f"{run.dataset}: AOPC over patch sizes and substrates")
    return [path]


def gallery_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Test images with their mask outline and one column per method, one figure per model."""
    from xaibench.io import from_half

    gallery = load_checked(run.path / "gallery.pt")
    if gallery is None:
        return []
    names = gallery["class_names"]
    labels = [names[int(y)] for y in gallery["labels"]]
    masks = None if gallery["masks"] is None else gallery["masks"].numpy()
    written = []
    for model, maps in gallery["maps"].items():
        path = out / f"gallery_{model}.png"
        plots.gallery(gallery["images"].numpy(), masks,
                      {m: from_half(a).numpy() for m, a in maps.items()}, path,
                      title=f"{run.dataset}, {model}", row_labels=labels)
        written.append(path)
    return written


def pompom_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """POMPOM bars (share of the map outside the object; lower is better) per method and model."""
    if run.scores is None:
        return []
    written = []
    for metric_id, c in run.metric_config().items():
        if c["plugin"] != "pompom":
            continue
        part = run.scores[run.scores["metric"] == metric_id]
        path = out / f"{metric_id}_bars.png"
        plots.metric_bars(part, path, title=f"{run.dataset}: {metric_id} (lower is better)",
                          ylabel=metric_id, seed=seed)
        written.append(path)
    return written


def agreement_plots(run: RunFolder, out: Path, seed: int) -> list[Path]:
    """Kendall tau between the rankings each metric induces (needs two ranked metrics)."""
    matrix = lb.agreement(run.board)
    if len(matrix) < 2:
        return []
    path = out / "metric_agreement.png"
    plots.agreement_heatmap(matrix, path, title=f"{run.dataset}: agreement between metrics")
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


def summary_table(board: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """The leaderboard as people read it: per metric "mean [CI]" and rank, the mean rank, and
    beside it the cost per image to explain and to score."""
    metrics = [c[: -len("_direction")] for c in board.columns if c.endswith("_direction")]
    rows = []
    cost = lb.cost_summary(costs).set_index(["model", "method"]) if costs is not None else None
    for _, r in board.iterrows():
        row = {"model": r["model"], "method": r["method"] + (" (control)" if r.get("control") else ""),
               "acc.": r["accuracy"], "mean rank": r["mean_rank"]}
        for m in metrics:
            arrow = {"higher": " ↑", "lower": " ↓"}.get(r[f"{m}_direction"], "")
            rank = "" if pd.isna(r.get(f"{m}_rank")) else f" #{int(r[f'{m}_rank'])}"
            row[m + arrow] = (f"{r[f'{m}_mean']:.3f} [{r[f'{m}_ci_low']:.3f}, "
                              f"{r[f'{m}_ci_high']:.3f}]{rank}")
        if cost is not None and (r["model"], r["method"]) in cost.index:
            c = cost.loc[(r["model"], r["method"])]
            row["explain s/img"] = f"{c['explain_s_per_image']:.4f}"
            row["score s/img"] = f"{c['score_s_per_image']:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def render(run_dir: Path, *, seed: int = 0) -> Path:
    """Write every plot and report.md into ``run_dir``; returns the report's path."""
    run = RunFolder(run_dir)
    figures = make_plots(run, list(PLOTS), seed=seed)
    figures += sorted((run.path / "plots").glob("tradeoff_*.png"))  # drawn earlier on request
    m = run.manifest
    models = run.csv("models.csv")
    parts = [f"# xaibench report: {m['config_name']} on {run.dataset}",
             f"Run `{m['run_id']}` (config `{m['config_source']}`, seed {m['seed']}, {m['n_test']} "
             f"test images, device {m['device']} ({m['device_name']}), xaibench "
             f"{m['versions'].get('xaibench', '?')}, torch {m['versions'].get('torch', '?')}). Re-create "
             f"with `xaibench run {m['config_source']} --seed {m['seed']}`.",
             "## Leaderboard",
             "Mean over test images with a 95% percentile-bootstrap confidence interval, and the "
             "method's rank (#) among the methods on that model; ↑ higher is better, ↓ lower is "
             "better. Controls ignore the model (random, edges, centre): a method should beat them. "
             "Costs are measured in this run on this device and vary between runs.",
             markdown_table(summary_table(run.board, run.costs))]
    if models is not None:
        parts += ["## Models", markdown_table(models)]
    matrix = lb.agreement(run.board)
    if len(matrix) >= 2:
        parts += ["## Agreement between metrics",
                  "Kendall tau between the method rankings each pair of metrics induces "
                  "(averaged over models with at least three methods; 1 = same order).",
                  markdown_table(matrix.reset_index(names="metric"))]
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
