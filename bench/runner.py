"""Run an experiment as a grid of cached cells: train(model) -> explain(model, method) ->
score(model, method, metric) -> outputs.

Every cell's result is cached under ``results/<dataset>/cache/``, keyed by a hash of exactly the
settings that determine it: changing one method's parameter recomputes that method's explain and
score cells only. Attributions are cached as float16 shards of one batch each, so a run killed
mid-way (Ctrl-C or kill -9) and started again with the same command redoes only the unfinished
shards and cells. All checking happens in :mod:`xaibench.config` before this module does any
work.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xaibench import leaderboard as lb
from xaibench.config import Config, ConfigError
from xaibench.datasets.splits import Split, Splits
from xaibench.io import config_hash, load_checked, save_checked, write_json
from xaibench.models import obtain_model
from xaibench.modelstate import eval_mode
from xaibench.plugins import Method, Metric, build
from xaibench.registry import DATASETS, METHODS, METRICS
from xaibench.seeding import seeded_global_rng

GALLERY_IMAGES = 4


class MethodError(RuntimeError):
    """An explainer returned something that breaks the method contract."""


def data_cache_key(dataset: dict, seed: int, splits: Splits) -> str:
    """The key of a run's data in every cache key downstream: the resolved [dataset] section,
    the seed and, for data read from disk, the splits' content fingerprint."""
    return config_hash("data", dataset, seed, *([splits.fingerprint] if splits.fingerprint else []))


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


# -- Ctrl-C -----------------------------------------------------------------------------------------

_interrupted = threading.Event()


@contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt at once, as usual, and also marks the run as interrupted:
    an interrupt that lands in code that swallows exceptions (a finalizer or a hook callback,
    where Python only prints "Exception ignored") still stops the run at the next shard or cell
    boundary (:func:`check_interrupted`). Only installed from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        _interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    _interrupted.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted.clear()


def check_interrupted() -> None:
    """Raise KeyboardInterrupt when Ctrl-C was pressed during the run (see :func:`interruptible`)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


# -- cost measurement ---------------------------------------------------------------------------


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last reset; CPU: the process's peak resident set size
    so far (an upper bound for the cell: it includes everything the process held before)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def measured(model: torch.nn.Module, device: torch.device) -> Iterator[dict[str, float]]:
    """Time a block and count the images the model's forward sees in it (forward passes).

    Yields a dict that holds ``seconds``, ``forwards`` and ``peak_mem_mb`` after the block.
    The counting hook is removed afterwards, so the model leaves as it came.
    """
    stats = {"forwards": 0.0}

    def count(_module: torch.nn.Module, args: tuple) -> None:
        stats["forwards"] += args[0].shape[0]

    handle = model.register_forward_pre_hook(count)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield stats
    finally:
        handle.remove()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stats["seconds"] = time.perf_counter() - start
    stats["peak_mem_mb"] = peak_memory_mb(device)


# -- cells ----------------------------------------------------------------------------------------


@dataclass
class CellLog:
    """What each cell of a run did: for the manifest and for resume checks."""

    cells: list[dict] = field(default_factory=list)

    def add(self, kind: str, model: str, cached: bool, method: str = "", metric: str = "",
            shards: int = 0, computed_shards: int = 0, path: str = "") -> None:
        """``path``: where the cell's result is cached, relative to the dataset's folder."""
        self.cells.append({"kind": kind, "model": model, "method": method, "metric": metric,
                           "cached": cached, "shards": shards, "computed_shards": computed_shards,
                           "path": path})


def to_half(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maps [B,H,W] as float16 relative to each map's max |a|, with that max kept in float32.

    Plain float16 flushes values below ~6e-8 to zero and keeps few digits below ~6e-5, and some
    methods' maps are that small (e.g. relevance conserved to a small logit); relative to its own
    maximum every map keeps float16's ~3 significant digits wherever it is not near zero.
    """
    scale = maps.abs().flatten(1).amax(1).float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return {"maps": (maps / safe.view(-1, 1, 1)).half().cpu(), "scale": scale.cpu()}


def from_half(shard: dict[str, torch.Tensor]) -> torch.Tensor:
    """The float32 maps [B,H,W] stored by :func:`to_half`."""
    return shard["maps"].float() * shard["scale"].view(-1, 1, 1)


def explain(
    method: Method,
    method_id: str,
    model: torch.nn.Module,
    split: Split,
    *,
    shard_dir: Path,
    batch_size: int,
    device: torch.device,
    target: str,
    seed: int,
    progress: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float], int]:
    """Attributions of one (model, method) cell on a split, from its shard cache.

    Each batch is one float16 shard file (checksummed, written atomically); missing or corrupt
    shards are computed, the others read. Returns (maps [N,H,W] float32 on ``device`` as read back
    from float16, targets [N], summed costs of all shards, number of shards computed now).
    """
    shards = []
    computed = 0
    starts = range(0, len(split), batch_size)
    for i, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False)):
        check_interrupted()
        path = shard_dir / f"{i:05d}.pt"
        shard = load_checked(path)
        if shard is None:
            images, labels, _ = split.batch(slice(start, start + batch_size), device)
            with measured(model, device) as cost:
                if target == "predicted":
                    with torch.inference_mode():
                        labels = model(images).argmax(1)
                # methods that draw from torch's global RNG: a known state per shard
                with seeded_global_rng(int(config_hash(seed, i), 16) & (2**63 - 1), device):
                    a = method.attribute(model, images, labels)
                check_attributions(a, images, method_id, start)
            shard = {**to_half(a.detach()), "targets": labels.cpu(), **cost}
            save_checked(path, shard)
            computed += 1
        shards.append(shard)
    # Metrics always read the float16 maps, so cached and fresh runs score identically.
    maps = torch.cat([from_half(s) for s in shards]).to(device)
    targets = torch.cat([s["targets"] for s in shards]).to(device)
    cost = {"seconds": sum(s["seconds"] for s in shards),
            "forwards": sum(s["forwards"] for s in shards),
            "peak_mem_mb": max(s["peak_mem_mb"] for s in shards)}
    return maps, targets, cost, computed


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


def score_cell(metric: Metric, model: torch.nn.Module, split: Split, attributions: torch.Tensor,
               targets: torch.Tensor, *, path: Path, batch_size: int,
               device: torch.device) -> tuple[dict, bool]:
    """One (model, method, metric) cell: {"scores", "curves", costs} from cache or computed."""
    check_interrupted()
    cell = load_checked(path)
    if cell is not None:
        return cell, True
    with measured(model, device) as cost:
        scores, curves = score(metric, model, split, attributions, targets,
                               batch_size=batch_size, device=device)
    cell = {"scores": scores, "curves": curves, **cost}
    save_checked(path, cell)
    return cell, False


def _relative(path: Path | str, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (portable manifests), else as given."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def gallery_indices(split: Split, k: int = GALLERY_IMAGES) -> list[int]:
    """Test images shown in the explanation gallery: the first ones with a ground-truth region
    (then the first others), ``k`` at most."""
    if split.masks is None:
        return list(range(min(k, len(split))))
    has_region = split.masks.flatten(1).any(1)
    order = torch.cat([has_region.nonzero().flatten(), (~has_region).nonzero().flatten()])
    return order[:k].tolist()


@dataclass
class RunResult:
    """Where a run wrote its outputs, and what it measured."""

    run_dir: Path
    leaderboard: object  # pandas.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    cells: list[dict] = field(default_factory=list)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("xaibench", "torch", "torchvision", "captum", "quantus", "zennit", "numpy", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run(config: Config, *, progress: bool = True) -> RunResult:
    """Run ``config`` end to end (reusing every cached cell) and write its outputs."""
    with interruptible():
        return _run(config, progress=progress)


def _run(config: Config, *, progress: bool) -> RunResult:
    from xaibench import report

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(config.run.out)
    check_writable(out)
    device = resolve_device(config.run.device)
    seed, batch_size = config.run.seed, config.run.batch_size
    resolved = config.resolved()
    # the output folder is where the run goes, not what it computes: not part of its id
    run_id = f"{config.name}-{config_hash({**resolved, 'run': {**resolved['run'], 'out': None}}, length=8)}"
    dataset_dir = out / config.dataset.plugin
    run_dir = dataset_dir / run_id
    cache_dir = dataset_dir / "cache"

    t = time.perf_counter()
    dataset = build(DATASETS.get(config.dataset.plugin), config.dataset.as_dict())
    splits = dataset.load(cache_dir=cache_dir / "data", seed=seed)
    test = splits.test
    data_key = data_cache_key(resolved["dataset"], seed, splits)
    timings["data_s"] = time.perf_counter() - t

    method_specs = {s.id: s for s in config.methods}
    metric_specs = {s.id: s for s in config.metrics}
    methods = {s.id: build(METHODS.get(s.plugin), s.as_dict()) for s in config.methods}
    metrics = {s.id: build(METRICS.get(s.plugin), s.as_dict()) for s in config.metrics}
    shown = gallery_indices(test)
    gallery: dict = {"images": test.images[shown], "labels": test.labels[shown],
                     "masks": None if test.masks is None else test.masks[shown],
                     "class_names": list(splits.class_names), "maps": {}}
    log = CellLog()
    score_rows, curve_rows, model_rows, cost_rows = [], [], [], []
    timings["train_s"] = timings["explain_s"] = timings["score_s"] = 0.0
    for model_cfg in config.models:
        check_interrupted()
        t = time.perf_counter()
        model, info = obtain_model(model_cfg, splits, data_key=data_key, cache_dir=cache_dir,
                                   device=device, seed=seed, progress=progress)
        timings["train_s"] += time.perf_counter() - t
        log.add("train", model_cfg.id, info["cached"], path=_relative(info["checkpoint"], dataset_dir))
        model_rows.append({"model": model_cfg.id, "arch": model_cfg.arch,
                           "accuracy": info["test_accuracy"], "epochs_run": len(info["history"])})
        report.write_training(run_dir, model_cfg.id, model_cfg.arch, info["history"])
        for method_id, method in methods.items():
            spec = method_specs[method_id]
            if not ((spec.models is None or model_cfg.id in spec.models)
                    and method.supports(model_cfg.arch)):
                continue
            t = time.perf_counter()
            attr_key = config_hash("attr-v3", data_key, info["checkpoint_id"], method_id,
                                   resolved["methods"][method_id], config.run.target, seed, batch_size)
            shard_dir = cache_dir / "attributions" / f"{model_cfg.id}-{method_id}-{attr_key}"
            attributions, targets, cost, computed = explain(
                method, method_id, model, test, shard_dir=shard_dir,
                batch_size=batch_size, device=device, target=config.run.target, seed=seed,
                progress=progress, desc=f"explain {model_cfg.id}/{method_id}")
            timings["explain_s"] += time.perf_counter() - t
            n_shards = -(-len(test) // batch_size)
            log.add("explain", model_cfg.id, computed == 0, method_id, shards=n_shards,
                    computed_shards=computed, path=_relative(shard_dir, dataset_dir))
            gallery["maps"].setdefault(model_cfg.id, {})[method_id] = to_half(attributions[shown])
            cost_rows.append(lb.cost_row("explain", model_cfg.id, method_id, "", cost, len(test),
                                         method.passes_per_image))
            for metric_id, metric in tqdm(metrics.items(), desc=f"score {model_cfg.id}/{method_id}",
                                          disable=not progress, leave=False):
                t = time.perf_counter()
                score_key = config_hash("score-v1", attr_key, metric_id,
                                        resolved["metrics"][metric_id], batch_size)
                score_path = cache_dir / "scores" / f"{model_cfg.id}-{method_id}-{metric_id}-{score_key}.pt"
                cell, cached = score_cell(metric, model, test, attributions, targets, path=score_path,
                                          batch_size=batch_size, device=device)
                timings["score_s"] += time.perf_counter() - t
                log.add("score", model_cfg.id, cached, method_id, metric_id,
                        path=_relative(score_path, dataset_dir))
                cost_rows.append(lb.cost_row("score", model_cfg.id, method_id, metric_id, cell, len(test)))
                score_rows += lb.score_frames(model_cfg.id, method_id, metric_id,
                                              metric_specs[metric_id].plugin, metric, cell["scores"])
                for curve, values in cell["curves"].items():
                    curve_rows.append(lb.long_curves(model_cfg.id, method_id,
                                                     f"{metric_id}_{curve}", values))
    check_interrupted()
    t = time.perf_counter()
    controls = [i for i, m in methods.items() if not m.uses_model]
    board = lb.write_outputs(
        run_dir, dataset=config.dataset.plugin, models=model_rows, scores=score_rows,
        curves=curve_rows, costs=cost_rows, labels=test.labels, controls=controls,
        bootstrap=config.run.bootstrap, seed=seed)
    save_checked(run_dir / "gallery.pt", gallery)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    write_json(run_dir / "manifest.json", {
        "run_id": run_id, "config_name": config.name, "config_source": config.source,
        "config": resolved, "seed": seed, "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch_threads": torch.get_num_threads(), "versions": versions(), "timings": timings,
        "n_test": len(test), "controls": controls, "cells": log.cells,
        "models": [{**row, "cached": c["cached"], "checkpoint": c["path"]} for row, c in
                   zip(model_rows, (c for c in log.cells if c["kind"] == "train"))],
    })
    t = time.perf_counter()
    report.render(run_dir, seed=seed)
    timings["report_s"] = time.perf_counter() - t
    return RunResult(run_dir=run_dir, leaderboard=board, timings=timings, cells=log.cells)
