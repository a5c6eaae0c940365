"""Write a run's outputs from its typed results: the CSV tables, the gallery, the manifest, then
the report (which only reads the run folder)."""

from __future__ import annotations

import platform
from importlib import metadata

import pandas as pd
import torch

from xaibench import leaderboard as lb
from xaibench import report
from xaibench.execute import Results, cell_status, method_of, metric_of
from xaibench.io import save_checked, to_half, write_json
from xaibench.keys import plugin_identity
from xaibench.plan import Plan
from xaibench.registry import DATASETS, METHODS, METRICS, MODELS

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
    """The rows of models.csv, scores.csv, curves.csv and costs.csv."""
    n = len(results.splits.test)
    models = [{"model": m.cell.name, "arch": m.cell.record["model"]["settings"]["arch"],
               "accuracy": m.trained.test_accuracy, "epochs_run": len(m.trained.history)}
              for m in results.models]
    costs = [lb.cost_row("explain", *e.cell.parts, "", vars(e.cost), n,
                         method_of(plan, e.cell).passes_per_image) for e in results.explained]
    scores, curves = [], []
    for s in results.scored:
        model_id, method_id, metric_id = s.cell.parts
        metric, plugin = metric_of(plan, s.cell)
        costs.append(lb.cost_row("score", model_id, method_id, metric_id, vars(s.cost), n))
        scores += lb.score_frames(model_id, method_id, metric_id, plugin, metric, s.scores)
        curves += [lb.long_curves(model_id, method_id, f"{metric_id}_{name}", values)
                   for name, values in s.curves.items()]
    return {"models": models, "scores": scores, "curves": curves, "costs": costs}


def gallery(results: Results) -> dict:
    """gallery.pt: the gallery images, their masks, true labels, each model's predicted classes
    and each (model, method)'s maps."""
    test, shown = results.splits.test, results.gallery
    maps: dict[str, dict] = {}
    for e in results.explained:
        model_id, method_id = e.cell.parts
        maps.setdefault(model_id, {})[method_id] = to_half(torch.stack([e.gallery[g] for g in shown]))
    predictions = {m.cell.name: m.gallery_predictions for m in results.models
                   if m.gallery_predictions is not None}
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


def manifest(plan: Plan, results: Results, timings: dict[str, float], world_size: int) -> dict:
    status = cell_status(results)
    device = torch.device(plan.device)
    return {
        "run_id": plan.run_id, "config_name": plan.config.name, "config_source": plan.config.source,
        "config": plan.config.resolved(), "raw_config": plan.config.raw, "seed": plan.config.run.seed,
        "device": plan.device,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch_threads": plan.threads, "processes": world_size, "versions": versions(),
        "timings": timings, "n_test": len(results.splits.test),
        "controls": controls(plan),
        "plugins": plugins(plan),
        "cells": [{"kind": c.kind, "name": c.name, "key": c.key, **status.get(c.name, {}),
                   "path": str(c.path.relative_to(plan.run_dir.parent)), "record": c.record}
                  for c in plan.cells],
    }


def controls(plan: Plan) -> list[str]:
    """The run's methods that ignore the model (random, sobel, center: the leaderboard's controls)."""
    return [s.id for s in plan.config.methods if not METHODS.get(s.plugin).uses_model]


def leaderboard(plan: Plan, results: Results) -> pd.DataFrame:
    """The leaderboard alone, written nowhere (``xaibench.evaluate`` without ``out``)."""
    rows = tables(plan, results)
    return lb.tables(rows["models"], rows["scores"], results.splits.test.labels,
                     dataset=plan.config.dataset.plugin, controls=controls(plan),
                     bootstrap=plan.config.run.bootstrap, seed=plan.config.run.seed)[2]


def write(plan: Plan, results: Results, timings: dict[str, float], *, world_size: int = 1) -> pd.DataFrame:
    """Write every output of the run under ``plan.run_dir``; return the leaderboard."""
    run_dir, rows = plan.run_dir, tables(plan, results)
    board = lb.write_outputs(run_dir, dataset=plan.config.dataset.plugin, models=rows["models"],
                             scores=rows["scores"], curves=rows["curves"], costs=rows["costs"],
                             labels=results.splits.test.labels, controls=controls(plan),
                             bootstrap=plan.config.run.bootstrap, seed=plan.config.run.seed)
    for m in (m for m in results.models if m.trained.history):
        lb.write_history(run_dir / "training" / f"{m.cell.name}.csv", m.trained.history)
    save_checked(run_dir / "gallery.pt", gallery(results))
    write_json(run_dir / "manifest.json", manifest(plan, results, timings, world_size))
    report.render(run_dir, seed=plan.config.run.seed)
    return board
