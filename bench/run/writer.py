"""Write a run's folder from its typed results: the CSV tables (with the leaderboard), the gallery,
the training histories and the manifest. The report (report.md and the figures) is drawn from
this folder afterwards by :mod:`xaibench.report.render`, which reads nothing else: the manifest
records what it needs of the plugins (each metric's figures and parameters, each method's
parameters and defaults)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from xaibench.io import save_checked, to_half, write_csv, write_json
from xaibench.keys import plugin_identity
from xaibench.leaderboard import tables as lb
from xaibench.leaderboard import trusted
from xaibench.leaderboard.jointclaim import ClaimSetup, claim_tables
from xaibench.params import parameters, resolved
from xaibench.registry import DATASETS, METHODS, METRICS, MODELS
from xaibench.run.execute import Results, cell_status
from xaibench.run.metatables import meta_tables
from xaibench.run.plan import Plan

DISTRIBUTIONS = ("xaibench", "torch", "torchvision", "captum", "quantus", "zennit", "numpy", "pandas")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def tables(plan: Plan, results: Results) -> dict[str, list]:
    """The rows of models.csv, scores.csv, curves.csv and costs.csv; with several training seeds
    each row also names its model's seed (a ``seed`` column after ``model``)."""
    n = len(results.splits.test)
    seeded = lb.with_seed if plan.several_seeds else (lambda rows, seed: rows)
    models = [seeded({"model": m.cell.model, "arch": m.cell.record["model"]["settings"]["arch"],
                      "accuracy": m.trained.test_accuracy, "epochs_run": len(m.trained.history)},
                     m.cell.seed) for m in results.models]
    costs = [seeded(lb.cost_row("explain", e.cell.model, e.cell.parts[1], "", vars(e.cost), n,
                                plan.method_of(e.cell).passes_per_image), e.cell.seed)
             for e in results.explained]
    plugins = {s.id: s.plugin for s in plan.config.metrics}
    scores, curves = [], []
    for s in results.scored:
        model_id, (_, method_id, metric_id) = s.cell.model, s.cell.parts
        costs.append(seeded(lb.cost_row("score", model_id, method_id, metric_id, vars(s.cost), n),
                            s.cell.seed))
        scores += [seeded(f, s.cell.seed) for f in lb.score_frames(
            model_id, method_id, metric_id, plugins[metric_id], plan.metric_of(s.cell), s.scores)]
        curves += [seeded(lb.long_curves(model_id, method_id, f"{metric_id}_{name}", values), s.cell.seed)
                   for name, values in s.curves.items()]
    return {"models": models, "scores": scores, "curves": curves, "costs": costs}


def gallery(results: Results) -> dict:
    """gallery.pt: the gallery images, their masks, true labels, each model's predicted classes
    and each (model, method)'s maps (with several training seeds: the first seed's model)."""
    test, shown = results.splits.test, results.gallery
    maps: dict[str, dict] = {}
    for e in results.explained:
        method_id = e.cell.parts[1]
        if method_id not in maps.get(e.cell.model, {}):
            maps.setdefault(e.cell.model, {})[method_id] = to_half(torch.stack([e.gallery[g] for g in shown]))
    predictions: dict[str, torch.Tensor] = {}
    for m in results.models:
        if m.gallery_predictions is not None:
            predictions.setdefault(m.cell.model, m.gallery_predictions)
    return {"images": test.images[shown], "labels": test.labels[shown],
            "masks": None if test.masks is None else test.masks[shown],
            "class_names": list(results.splits.class_names), "maps": maps, "predictions": predictions}


def plugins(plan: Plan) -> list[dict]:
    """Every plugin the run used: kind, name, distribution, version and code hash."""
    cfg = plan.config
    used = [("dataset", cfg.dataset.plugin, DATASETS),
            *(("model", m.arch.split(":")[0], MODELS) for m in cfg.models),
            *(("method", s.plugin, METHODS) for s in cfg.methods),
            *(("metric", s.plugin, METRICS) for s in cfg.metrics)]
    seen = {(kind, name): registry for kind, name, registry in used}
    return [{"kind": kind, "name": name, **plugin_identity(registry.get(name))}
            for (kind, name), registry in seen.items()]


def declared(plan: Plan) -> dict[str, dict]:
    """What the report needs to know of the run's plugins, so that it reads the run folder alone:
    per method its plugin, every parameter and the ones that differ from the plugin's defaults;
    per metric its plugin, its family, every parameter and the figures it declares
    (``Metric.figures``)."""
    def plain(v: object) -> object:
        return list(v) if isinstance(v, tuple) else v

    methods = {}
    for s in plan.config.methods:
        cls = type(s.instance)
        params = resolved(cls, s.as_dict())
        defaults = {k: d for k, (_, d) in parameters(cls).items()}
        methods[s.id] = {"plugin": s.plugin, "params": params,
                         "changed": [k for k, v in params.items() if plain(v) != plain(defaults[k])]}
    metrics = {s.id: {"plugin": s.plugin, "family": s.instance.family,
                      "params": resolved(type(s.instance), s.as_dict()),
                      "figures": list(s.instance.figures)} for s in plan.config.metrics}
    return {"methods": methods, "metrics": metrics}


def manifest(plan: Plan, results: Results, timings: dict[str, float], world_size: int) -> dict:
    status = cell_status(results)
    device = torch.device(plan.device)
    return {
        "run_id": plan.run_id, "config_name": plan.config.name, "config_source": plan.config.source,
        "config": plan.config.resolved(), "raw_config": plan.config.raw, "seed": plan.config.run.seed,
        "device": plan.device,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()),
        "torch_threads": plan.threads, "processes": world_size, "versions": versions(),
        "timings": timings, "n_test": len(results.splits.test),
        "controls": controls(plan),
        "plugins": plugins(plan),
        **declared(plan),
        "cells": [{"kind": c.kind, "name": c.name, "key": c.key, **status.get(c.name, {}),
                   "path": str(c.path.relative_to(plan.run_dir.parent)), "record": c.record}
                  for c in plan.cells],
    }


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13"), from /proc/cpuinfo where there is one, else what
    :mod:`platform` knows ("x86_64"): timings are read beside it."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def controls(plan: Plan) -> list[str]:
    """The run's methods that ignore the model (random, sobel, center: the leaderboard's controls)."""
    return [s.id for s in plan.config.methods if not s.instance.uses_model]


def families(plan: Plan, results: Results) -> dict[str, str]:
    """Each metric column of the leaderboard -> the family its metric declares (``Metric.family``,
    from the plan's built metrics): a metric's other score keys (e.g. ``aopc_lerf``) have its
    family."""
    plugins = {s.id: s.plugin for s in plan.config.metrics}
    out = {}
    for s in results.scored:
        metric_id = s.cell.parts[2]
        for key in s.scores:
            out[lb.score_column(metric_id, plugins[metric_id], key)] = plan.metric_of(s.cell).family
    return out


def frames(plan: Plan, rows: dict[str, list], results: Results) -> tuple[pd.DataFrame, ...]:
    """(models, scores, leaderboard) frames from the rows of :func:`tables`, the test labels and
    the metrics' families."""
    return lb.tables(rows["models"], rows["scores"], results.splits.test.labels,
                     dataset=plan.config.dataset.plugin, controls=controls(plan),
                     bootstrap=plan.config.run.bootstrap, seed=plan.config.run.seed,
                     families=families(plan, results))


def claim_setup(plan: Plan) -> ClaimSetup | None:
    """Where the xML paper's claim is read in this run (:mod:`xaibench.leaderboard.jointclaim`):
    its joint models (arch ``joint_*``) by loss, the methods reading their maps (plugin
    ``joint``), the other methods that use the model, and the metrics POMPOM on positives and
    relevance mass raw and thresholded (the first of each). None without a joint model, a joint
    map or POMPOM on positives (which needs masks)."""
    cfg = plan.config
    joint_models: dict[str, str] = {}
    for m in (m for m in cfg.models if str(m.arch).startswith("joint_")):
        joint_models.setdefault(m.loss, m.id)
    metrics: dict[str, str] = {}
    for spec in cfg.metrics:
        positives = getattr(spec.instance, "images", "") == "positives"
        reading = {"pompom": "pompom_positives" if positives else "",
                   "relevance_mass": "mass_thresholded" if getattr(spec.instance, "threshold", 0) else "mass",
                   }.get(spec.plugin, "")
        if reading:
            metrics.setdefault(reading, spec.id)
    joint = [s.id for s in cfg.methods if s.plugin == "joint"]
    if not joint_models or not joint or "pompom_positives" not in metrics:
        return None
    post_hoc = [s.id for s in cfg.methods if s.plugin != "joint" and s.instance.uses_model]
    return ClaimSetup(joint_models, joint, post_hoc, metrics)


def leaderboard(plan: Plan, results: Results) -> pd.DataFrame:
    """The leaderboard alone, written nowhere (``xaibench.evaluate`` without ``out``)."""
    return frames(plan, tables(plan, results), results)[2]


def write(plan: Plan, results: Results, timings: dict[str, float], *, world_size: int = 1) -> pd.DataFrame:
    """Write every table of the run, the gallery, the training histories and the manifest under
    ``plan.run_dir``; return the leaderboard."""
    run_dir, rows = plan.run_dir, tables(plan, results)
    model_frame, score_frame, board = frames(plan, rows, results)
    if results.meta:  # the meta-evaluation ([meta] in the config): its tables, and its verdicts on the board
        meta_frame, ranks = meta_tables(plan, results, results.meta)
        write_csv(run_dir / "meta.csv", meta_frame)
        write_csv(run_dir / "rank_stability.csv", ranks)
        board = trusted.with_verdicts(board, meta_frame)
    write_csv(run_dir / "leaderboard.csv", board)
    write_csv(run_dir / "scores.csv", score_frame)
    write_csv(run_dir / "models.csv", model_frame)
    write_csv(run_dir / "costs.csv", pd.DataFrame(rows["costs"]))
    if rows["curves"]:
        write_csv(run_dir / "curves.csv", pd.concat(rows["curves"], ignore_index=True))
    for m in (m for m in results.models if m.trained.history):
        write_csv(Path(run_dir) / "training" / f"{m.cell.name}.csv", pd.DataFrame(m.trained.history))
    save_checked(run_dir / "gallery.pt", gallery(results))
    setup = claim_setup(plan)
    if setup is not None:  # joint models and POMPOM on positives: the xML paper's claim
        claim, order = claim_tables(score_frame, setup, seed=plan.config.run.seed)
        write_csv(run_dir / "joint_claim.csv", claim)
        write_csv(run_dir / "joint_ordering.csv", order)
    write_json(run_dir / "manifest.json", manifest(plan, results, timings, world_size))
    return board
