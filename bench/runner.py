"""Run an experiment: data -> models -> attributions -> scores -> outputs.

All checking happens in :mod:`xaibench.config` before this module does any work.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from xaibench import leaderboard as lb
from xaibench import plots
from xaibench.config import Config, ConfigError
from xaibench.datasets.splits import Split
from xaibench.io import config_hash, load_checked, save_checked, write_json
from xaibench.models import obtain_model
from xaibench.modelstate import eval_mode
from xaibench.plugins import Method, Metric, build
from xaibench.registry import DATASETS, METHODS, METRICS


class MethodError(RuntimeError):
    """An explainer returned something that breaks the method contract."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_writable(out: Path) -> None:
    """Raise ConfigError unless ``out`` can be created and written (creates nothing)."""
    probe = out.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"[run] out: cannot write under {out} ({probe} is not a writable "
                          f"folder); choose another folder with --out")


def check_attributions(maps: torch.Tensor, images: torch.Tensor, method_id: str, offset: int) -> None:
    """Enforce the method contract: [B,H,W] float32, finite, on the images' device."""
    b, _, h, w = images.shape
    if maps.shape != (b, h, w) or maps.dtype != torch.float32 or maps.device != images.device:
        raise MethodError(f"method {method_id!r} returned {maps.dtype} {tuple(maps.shape)} on "
                          f"{maps.device}; expected float32 {(b, h, w)} on {images.device}")
    bad = (~torch.isfinite(maps)).flatten(1).any(1)
    if bad.any():
        index = offset + int(bad.nonzero()[0])
        raise MethodError(f"method {method_id!r} produced NaN or inf on test image {index}")


def explain(
    method: Method,
    method_id: str,
    model: torch.nn.Module,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    target: str,
    progress: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(attributions [N,H,W] float32 on ``device``, explained targets [N]) for a split."""
    maps, targets = [], []
    batches = split.batches(batch_size, device=device)
    for offset, (images, labels, _) in zip(range(0, len(split), batch_size),
                                           tqdm(batches, desc=desc, disable=not progress,
                                                leave=False, total=-(-len(split) // batch_size))):
        if target == "predicted":
            with torch.inference_mode():
                labels = model(images).argmax(1)
        a = method.attribute(model, images, labels)
        check_attributions(a, images, method_id, offset)
        maps.append(a.detach())
        targets.append(labels)
    return torch.cat(maps), torch.cat(targets)


def score(
    metric: Metric,
    model: torch.nn.Module,
    split: Split,
    attributions: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-image scores {column: [N]} and curves {name: [N, steps+1]} of ``metric`` on a split."""
    scores: dict[str, list[torch.Tensor]] = {}
    curves: dict[str, list[torch.Tensor]] = {}
    with eval_mode(model):
        for start in range(0, len(split), batch_size):
            images, _, masks = split.batch(slice(start, start + batch_size), device)
            out = metric.evaluate(model, images, targets[start:start + batch_size],
                                  attributions[start:start + batch_size], masks)
            for k, v in out.scores.items():
                scores.setdefault(k, []).append(v.detach().float().cpu())
            for k, v in out.curves.items():
                curves.setdefault(k, []).append(v.detach().float().cpu())
    return ({k: torch.cat(v) for k, v in scores.items()},
            {k: torch.cat(v) for k, v in curves.items()})


def score_frames(model_id: str, method_id: str, metric_id: str, plugin: str, metric: Metric,
                 scores: dict[str, torch.Tensor]) -> list[pd.DataFrame]:
    """Long-format score rows of one metric: the score keyed by the plugin's name becomes column
    ``<metric_id>``, any other key ``<metric_id>_<key>``, each with its own direction."""
    return [lb.long_scores(model_id, method_id, metric_id if key == plugin else f"{metric_id}_{key}",
                           values, metric.direction(key))
            for key, values in scores.items()]


@dataclass
class RunResult:
    """Where a run wrote its outputs, and what it measured."""

    run_dir: Path
    leaderboard: object  # pandas.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("xaibench", "torch", "torchvision", "captum", "quantus", "zennit", "numpy", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run(config: Config, *, progress: bool = True) -> RunResult:
    """Run ``config`` end to end and write its outputs; returns where they are."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(config.run.out)
    check_writable(out)
    device = resolve_device(config.run.device)
    seed = config.run.seed
    resolved = config.resolved()
    run_id = f"{config.name}-{config_hash(resolved, length=8)}"
    dataset_dir = out / config.dataset.plugin
    run_dir = dataset_dir / run_id
    cache_dir = dataset_dir / "cache"

    t = time.perf_counter()
    dataset = build(DATASETS.get(config.dataset.plugin), config.dataset.as_dict())
    splits = dataset.load(cache_dir=cache_dir / "data", seed=seed)
    data_key = config_hash("data", resolved["dataset"], seed,
                           *([splits.fingerprint] if splits.fingerprint else []))
    timings["data_s"] = time.perf_counter() - t

    method_specs = {s.id: s for s in config.methods}
    metric_specs = {s.id: s for s in config.metrics}
    methods = {s.id: build(METHODS.get(s.plugin), s.as_dict()) for s in config.methods}
    metrics = {s.id: build(METRICS.get(s.plugin), s.as_dict()) for s in config.metrics}
    score_rows, curve_rows, model_rows, cost_rows = [], [], [], []
    timings["train_s"] = timings["explain_s"] = timings["score_s"] = 0.0
    for model_cfg in config.models:
        t = time.perf_counter()
        model, info = obtain_model(model_cfg, splits, data_key=data_key, cache_dir=cache_dir,
                                   device=device, seed=seed, progress=progress)
        timings["train_s"] += time.perf_counter() - t
        model_rows.append({"model": model_cfg.id, "arch": model_cfg.arch,
                           "accuracy": info["test_accuracy"], "checkpoint": info["checkpoint"],
                           "cached": info["cached"], "epochs_run": len(info["history"])})
        lb.write_history(run_dir / "training" / f"{model_cfg.id}.csv", info["history"])
        if info["history"]:
            plots.training_curves(pd.DataFrame(info["history"]),
                                  run_dir / "training" / f"{model_cfg.id}.png",
                                  title=f"{model_cfg.id} ({model_cfg.arch})")
        for method_id, method in methods.items():
            spec = method_specs[method_id]
            wanted = spec.models is None or model_cfg.id in spec.models
            if not (wanted and method.supports(model_cfg.arch)):
                continue
            t = time.perf_counter()
            key = config_hash("attr", data_key, info["checkpoint"], method_id,
                              resolved["methods"][method_id], config.run.target, seed)
            attr_path = cache_dir / "attributions" / f"{model_cfg.id}-{method_id}-{key}.pt"
            cached = load_checked(attr_path)
            if cached is None:
                torch.manual_seed(seed)  # methods with noise draw from a known state
                maps, targets = explain(
                    method, method_id, model, splits.test, batch_size=config.run.batch_size,
                    device=device, target=config.run.target, progress=progress,
                    desc=f"explain {model_cfg.id}/{method_id}")
                cached = {"maps": maps.half().cpu(), "targets": targets.cpu(),
                          "seconds": time.perf_counter() - t}
                save_checked(attr_path, cached)
            # Metrics always read the float16 maps, so cached and fresh runs score identically.
            attributions = cached["maps"].float().to(device)
            targets = cached["targets"].to(device)
            timings["explain_s"] += time.perf_counter() - t
            cost_rows.append({"model": model_cfg.id, "method": method_id,
                              "explain_s_per_image": cached["seconds"] / len(splits.test),
                              "passes_per_image": method.passes_per_image})
            for metric_id, metric in tqdm(metrics.items(), desc=f"score {model_cfg.id}/{method_id}",
                                          disable=not progress, leave=False):
                t = time.perf_counter()
                scores, curves = score(metric, model, splits.test, attributions, targets,
                                       batch_size=config.run.batch_size, device=device)
                timings["score_s"] += time.perf_counter() - t
                score_rows += score_frames(model_cfg.id, method_id, metric_id,
                                           metric_specs[metric_id].plugin, metric, scores)
                for curve, values in curves.items():
                    curve_rows.append(lb.long_curves(model_cfg.id, method_id,
                                                     f"{metric_id}_{curve}", values))
    t = time.perf_counter()
    board = lb.write_outputs(
        run_dir, dataset=config.dataset.plugin, models=model_rows, scores=score_rows,
        curves=curve_rows, labels=splits.test.labels, bootstrap=config.run.bootstrap, seed=seed)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    write_json(run_dir / "manifest.json", {
        "run_id": run_id, "config_name": config.name, "config_source": config.source,
        "config": resolved, "seed": seed, "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch_threads": torch.get_num_threads(), "versions": versions(), "timings": timings,
        "models": model_rows, "costs": cost_rows, "n_test": len(splits.test),
    })
    return RunResult(run_dir=run_dir, leaderboard=board, timings=timings)
