"""Execute a plan: compute the cells that are not cached and return typed results.

Data and models come first (on rank 0 under torchrun, the other ranks then read them from the
cache). Each explain cell is computed as attribution shards of one test batch each (float16,
checksummed, written atomically), so a run killed mid-way redoes only the missing shards; each
rank explains and scores the shards it owns and rank 0 gathers the results in test-image order.
Shards are the one-process batches, so a sharded run computes exactly what one process does.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from xaibench import budget, keys
from xaibench.check import guards
from xaibench.config import RunConfig
from xaibench.datasets.splits import Split, Splits
from xaibench.errors import RunError
from xaibench.io import from_half, load_checked, save_checked, to_half, write_json
from xaibench.metrics.perturbation import CurveMetric, CurveRequest
from xaibench.models.modelstate import eval_mode
from xaibench.models.training import TrainedModel
from xaibench.plugins import Method, Metric, MetricOutput
from xaibench.run.distributed import World
from xaibench.run.plan import Cell, Plan, is_cached
from xaibench.seeding import derive_seed, seeded_global_rng

GALLERY_IMAGES = 4
SOLO = World()  # one process


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


# -- costs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """Seconds, images seen by the model's forward (forward passes) and peak memory of a cell.
    CPU peak memory is the process's peak resident set so far (an upper bound for the cell)."""

    seconds: float = 0.0
    forwards: float = 0.0
    peak_mem_mb: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.seconds + other.seconds, self.forwards + other.forwards,
                    max(self.peak_mem_mb, other.peak_mem_mb))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def measured(model: torch.nn.Module, device: torch.device) -> Iterator[list[Cost]]:
    """Time a block and count the images the model's forward sees in it; the yielded list holds
    the :class:`Cost` after the block. The counting hook is removed afterwards."""
    seen = [0]
    out: list[Cost] = []

    def count(_module: torch.nn.Module, args: tuple) -> None:
        if not budget.probing():  # the budget's footprint probe is not the method's work
            seen[0] += args[0].shape[0]

    handle = model.register_forward_pre_hook(count)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield out
    finally:
        handle.remove()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out.append(Cost(time.perf_counter() - start, float(seen[0]), peak_memory_mb(device)))


# -- typed results --------------------------------------------------------------------------------


@dataclass
class ModelResult:
    """A model cell, and the class it predicts for each gallery image (for the gallery's labels)."""

    cell: Cell
    trained: TrainedModel
    gallery_predictions: torch.Tensor | None = None


@dataclass
class Explained:
    """An explain cell: summed costs of its shards, how many were computed now, and the maps of
    the gallery images {test index: [H,W] float32}."""

    cell: Cell
    cost: Cost
    shards: int
    computed_shards: int
    gallery: dict[int, torch.Tensor]


@dataclass
class Scored:
    """A score cell: per-image scores {column: [N]} and curves {name: [N, steps+1]}."""

    cell: Cell
    scores: dict[str, torch.Tensor]
    curves: dict[str, torch.Tensor]
    cost: Cost
    computed: bool


@dataclass
class Results:
    """Everything a run computed or reused, for the writer (complete on rank 0 only)."""

    splits: Splits
    data_computed: bool
    gallery: list[int]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage on this rank
    models: list[ModelResult] = field(default_factory=list)
    explained: list[Explained] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)
    meta: list = field(default_factory=list)  # xaibench.run.meta.MetaScored, when [meta] is set


# -- loaders (also used to redraw figures from a run's cache) ----------------------------------------


def torch_device(plan: Plan, world: World) -> torch.device:
    """The run's device; under torchrun on CUDA, each process's own GPU."""
    device = torch.device(plan.device)
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def save_record(cell: Cell, **extra: Any) -> None:
    """The cell's record as JSON beside its result (what ``--dry-run`` compares against)."""
    write_json(cell.record_path, {"name": cell.name, "key": cell.key, "record": cell.record, **extra})


def load_data(plan: Plan, world: World = SOLO) -> tuple[Splits, bool]:
    """The run's splits and whether they were built now (rank 0 first, then the others)."""
    cell = plan.of_kind("data")[0]
    computed = not is_cached(cell)
    dataset = plan.dataset
    if world.main:
        splits = dataset.load(cache_dir=cell.path, seed=plan.config.run.seed)
        save_record(cell)
    world.barrier()
    if not world.main:
        splits = dataset.load(cache_dir=cell.path, seed=plan.config.run.seed)
    return splits, computed


def phases_key(cell: Cell) -> str:
    """What keys a multi-stage trainer's intermediate caches: the model cell's record without the
    model's settings (each stage adds the settings it depends on)."""
    return keys.digest({**cell.record, "model": {**cell.record["model"], "settings": None}})


def load_model(plan: Plan, cell: Cell, splits: Splits, device: torch.device, world: World = SOLO,
               progress: bool = False) -> TrainedModel:
    """A model cell: trained with the cell's seed (on rank 0) or read from the cache."""
    cfg = plan.model_config(cell)

    def obtain() -> TrainedModel:
        return cfg.obtain(splits, path=cell.path, context_key=phases_key(cell), device=device,
                          seed=cell.seed, progress=progress)

    trained = obtain() if world.main else None
    if world.main:
        save_record(cell)
    world.barrier()
    return trained if world.main else obtain()


# -- explain ------------------------------------------------------------------------------------


def shard_starts(split: Split, batch_size: int) -> list[int]:
    return list(range(0, len(split), batch_size))


def explain_shard(method: Method, method_id: str, model: torch.nn.Module, split: Split, i: int, *,
                  run: RunConfig, device: torch.device, seed: int | None = None,
                  check: bool = False) -> dict:
    """Compute test-image shard ``i`` (the i-th batch of ``run.batch_size``) of an explain cell
    whose model was trained with ``seed`` (default: ``run.seed``): maps (float16, relative to
    each map's max), targets, cost. With ``check``, stop with a
    :class:`~xaibench.errors.ContractError` when the method leaves the model changed."""
    before = guards.snapshot(model) if check else None
    start = i * run.batch_size
    images, labels, _ = split.batch(slice(start, start + run.batch_size), device)
    with measured(model, device) as cost:
        if run.target == "predicted":
            with torch.inference_mode():
                labels = model(images).argmax(1)
        # methods that draw from torch's global RNG: a known state per shard
        with seeded_global_rng(derive_seed(run.seed if seed is None else seed, i), device):
            maps = method.attribute(model, images, labels)
        guards.check_maps(maps, images, method_id, start)
    if before is not None:
        guards.ensure_unchanged(model, before, method_id)
    c = cost[0]
    return {**to_half(maps.detach()), "targets": labels.cpu(), "seconds": c.seconds,
            "forwards": c.forwards, "peak_mem_mb": c.peak_mem_mb}


def explain(plan: Plan, cell: Cell, model: torch.nn.Module, split: Split, *, device: torch.device,
            world: World, gallery: list[int], progress: bool) -> tuple[dict[int, dict], Explained | None]:
    """This rank's shards of an explain cell ({shard: shard}, read or computed) and, on rank 0,
    the cell's :class:`Explained` gathered from every rank."""
    method = plan.method_of(cell)
    guards.ensure_explains(method, cell.parts[1], cell.model, model)
    bs = plan.config.run.batch_size
    mine, computed = {}, 0
    owned = [i for i in range(len(shard_starts(split, bs))) if world.owns(i)]
    for i in tqdm(owned, desc=f"explain {cell.name}", disable=not progress, leave=False):
        check_interrupted()
        path = cell.path / f"{i:05d}.pt"
        shard = load_checked(path)
        if shard is None:
            shard = explain_shard(method, cell.parts[1], model, split, i, run=plan.config.run,
                                  seed=cell.seed, device=device, check=computed == 0)
            save_checked(path, shard)
            computed += 1
        mine[i] = shard
    shown = {g: from_half(mine[g // bs])[g % bs] for g in gallery if g // bs in mine}
    costs = {i: Cost(s["seconds"], s["forwards"], s["peak_mem_mb"]) for i, s in mine.items()}
    parts = world.gather((costs, computed, shown))
    if parts is None:
        return mine, None
    all_costs = {i: c for p in parts for i, c in p[0].items()}
    save_record(cell, shards=len(all_costs))
    return mine, Explained(cell, sum((all_costs[i] for i in sorted(all_costs)), Cost()),
                           len(all_costs), sum(p[1] for p in parts),
                           {g: m for p in parts for g, m in p[2].items()})


# -- score --------------------------------------------------------------------------------------


Curves = dict[CurveRequest, dict[int, torch.Tensor]]  # the curves of one explain cell, per shard


def score_shard(metric: Metric, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
             maps: torch.Tensor, masks: torch.Tensor | None, *, shard: int, curves: Curves,
             extra: dict) -> MetricOutput:
    """One shard of a score cell. A metric made of engine curves takes each curve from
    ``curves`` when another metric of the same explain cell asked for it already (the request
    is the curve's key), else computes and keeps it there."""
    if not isinstance(metric, CurveMetric):
        return metric.evaluate(model, images, targets, maps, masks, **extra)
    got = {}
    for name, request in metric.requests(*images.shape[2:]).items():
        per_shard = curves.setdefault(request, {})
        if shard not in per_shard:
            per_shard[shard] = request.compute(model, images, maps, targets)
        got[name] = per_shard[shard]
    return metric.from_curves(got)


def score(plan: Plan, cell: Cell, model: torch.nn.Module, split: Split, shards: dict[int, dict], *,
          device: torch.device, world: World, curves: Curves) -> Scored | None:
    """A score cell: read on rank 0 when cached, else every rank scores its shards and rank 0
    gathers them in test-image order and caches the cell. None on the other ranks. Curves
    computed for an earlier metric of the same explain cell are reused: their forward passes
    count for the metric that computed them, and zero for this one."""
    check_interrupted()
    cached = world.broadcast(is_cached(cell) if world.main else None)
    if cached:
        if not world.main:
            return None
        c = load_checked(cell.path)
        return Scored(cell, c["scores"], c["curves"], Cost(c["seconds"], c["forwards"], c["peak_mem_mb"]),
                      computed=False)
    metric = plan.metric_of(cell)
    extra = {"method": plan.method_of(cell)} if metric.needs_method else {}
    bs = plan.config.run.batch_size
    mine = {}
    with measured(model, device) as cost, eval_mode(model):
        for i, shard in shards.items():
            images, _, masks = split.batch(slice(i * bs, (i + 1) * bs), device)
            out = score_shard(metric, model, images, shard["targets"].to(device), from_half(shard).to(device),
                           masks, shard=i, curves=curves, extra=extra)
            mine[i] = ({k: v.detach().float().cpu() for k, v in out.scores.items()},
                       {k: v.detach().float().cpu() for k, v in out.curves.items()})
    parts = world.gather((mine, cost[0]))
    if parts is None:
        return None
    batches = {i: b for p in parts for i, b in p[0].items()}
    order = sorted(batches)
    scores = {k: torch.cat([batches[i][0][k] for i in order]) for k in batches[order[0]][0]}
    curves = {k: torch.cat([batches[i][1][k] for i in order]) for k in batches[order[0]][1]}
    total = sum((p[1] for p in parts), Cost())
    save_checked(cell.path, {"scores": scores, "curves": curves, "seconds": total.seconds,
                             "forwards": total.forwards, "peak_mem_mb": total.peak_mem_mb})
    save_record(cell)
    return Scored(cell, scores, curves, total, computed=True)


# -- the whole plan -----------------------------------------------------------------------------


def gallery_indices(split: Split, k: int = GALLERY_IMAGES) -> list[int]:
    """Test images shown in the explanation gallery: round robin over the classes (one image of
    each class in turn; ``k`` images, raised to the number of classes up to 8), within a class the
    images with a ground-truth region first, then in test order."""
    n = len(split)
    region = (split.masks.flatten(1).any(1) if split.masks is not None
              else torch.zeros(n, dtype=torch.bool))
    order = torch.argsort((~region).long(), stable=True)  # images with a region first
    labels = split.labels[order]
    classes = labels.unique()
    k = min(max(k, len(classes)), 8, n)
    queues = [order[labels == c][:k].tolist() for c in classes]
    return [q[r] for r in range(k) for q in queues if r < len(q)][:k]


def predict(model: torch.nn.Module, split: Split, indices: list[int], device: torch.device) -> torch.Tensor:
    """The class ``model`` predicts for the test images ``indices`` (CPU tensor [len(indices)])."""
    if not indices:
        return torch.zeros(0, dtype=torch.long)
    with eval_mode(model), torch.inference_mode():
        return model(split.batch(torch.tensor(indices), device)[0]).argmax(1).cpu()


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def give_references(plan: Plan, splits: Splits) -> None:
    """Hand every method that declares a ``reference_split`` the images of that split of the run's
    data (:meth:`~xaibench.plugins.Method.use_references`), before it explains anything. What
    they depend on is in every explain cell's key: the data cell's key and the method's code."""
    for mid, method in plan.methods.items():
        if method.reference_split is None:
            continue
        split = getattr(splits, method.reference_split)
        if len(split) == 0:
            raise RunError(f"[methods.{mid}] needs the {method.reference_split} split's images as "
                           f"references, but the dataset's {method.reference_split} split is empty")
        method.use_references(split.images)


def execute(plan: Plan, world: World, *, progress: bool = True) -> Results:
    """Compute every cell of ``plan`` that is not cached; rank 0 gets the complete results.
    Methods and metrics chunk their work to the run's memory budget (``[run] memory``)."""
    device = torch_device(plan, world)
    with budget.limited(budget.resolve(plan.config.run.memory, device)):
        return _execute(plan, world, device, progress=progress)


def _execute(plan: Plan, world: World, device: torch.device, *, progress: bool) -> Results:
    timings: dict[str, float] = {}
    with timed(timings, "data_s"):
        splits, data_computed = load_data(plan, world)
    give_references(plan, splits)
    results = Results(splits, data_computed, gallery_indices(splits.test), timings)
    for model_cell in plan.of_kind("model"):
        check_interrupted()
        with timed(timings, "train_s"):
            trained = load_model(plan, model_cell, splits, device, world, progress and world.main)
        results.models.append(ModelResult(model_cell, trained,
                                          predict(trained.model, splits.test, results.gallery, device)))
        for explain_cell in plan.below(model_cell, "explain"):
            with timed(timings, "explain_s"):
                shards, explained = explain(plan, explain_cell, trained.model, splits.test, device=device,
                                            world=world, gallery=results.gallery, progress=progress)
            results.explained += [explained] if explained else []
            curves: Curves = {}
            for score_cell in plan.below(explain_cell, "score"):
                with timed(timings, "score_s"):
                    scored = score(plan, score_cell, trained.model, splits.test, shards,
                                   device=device, world=world, curves=curves)
                results.scored += [scored] if scored else []
    return results


def cell_status(results: Results) -> dict[str, dict[str, Any]]:
    """name -> {computed, shards, computed_shards} for every cell (for the manifest and the CLI)."""
    out: dict[str, dict[str, Any]] = {"data": {"computed": results.data_computed}}
    out.update({m.cell.name: {"computed": m.trained.computed} for m in results.models})
    out.update({e.cell.name: {"computed": e.computed_shards > 0, "shards": e.shards,
                              "computed_shards": e.computed_shards} for e in results.explained})
    out.update({s.cell.name: {"computed": s.computed} for s in results.scored})
    out.update({m.cell.name: {"computed": m.computed} for m in results.meta})
    return out
