"""Plan a run: the cells of a checked config, each with its key, its record and its dependencies.

A run is a grid of cells: data, model(model, seed), explain(model, method) and
score(model, method, metric), where each trained model has one model cell per training seed
(``[run] seeds``) and the cells below it follow that seed. :func:`plan` is pure: it reads file
fingerprints (data on disk, checkpoints) but does no torch work, so ``xaibench run --dry-run``
can say, before anything is computed, which cells are reused from the cache and why the others
are not. Every key comes from :mod:`xaibench.keys`. The plan holds the plugins the config check
built (``dataset``, ``methods``, ``metrics``): the run uses those instances and builds none.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from xaibench import keys
from xaibench.config import Config, PluginSpec, applies
from xaibench.io import checksum_of, is_valid
from xaibench.params import resolved
from xaibench.registry import DATASETS, METHODS, METRICS, Registry
from xaibench.run.determinism import CUDA_KERNELS

Kind = Literal["data", "model", "explain", "score", "meta"]
EXECUTOR = "xaibench.run.execute"  # the module that computes explain and score cells
META_EXECUTOR = "xaibench.run.meta"  # the module that computes the meta-evaluation's cells
META_TESTS = ("model_resilience", "model_adversary", "input_resilience", "input_adversary")


@dataclass(frozen=True)
class Cell:
    """One unit of work and its cached result.

    Attributes:
        kind: "data", "model", "explain", "score" or "meta".
        name: "data", "<model>", "<model>/<method>", "<model>/<method>/<metric>", or for the
            meta-evaluation "<model>/<metric>/<test>/<iteration>" and "<model>/<metric>/sweep/<j>".
            In a run with several training seeds, a trained model's part is "<model>@<seed>"
            (e.g. "resnet18@1/gradcam"); with one seed, and for loaded models, it is "<model>".
        key: :func:`xaibench.keys.digest` of ``record``.
        record: everything that determines the result (plain JSON data).
        path: the cached result: a file (model, score), or a folder (data, explain shards).
            Named by the model's id, not the seed (the key tells the seeds apart), so a cell is
            found whichever seeds a run lists.
        deps: the names of the cells it depends on.
        model: the model's id in the config ("" for the data cell).
        seed: the seed its model was trained (or loaded) with and its methods draw from.
    """

    kind: Kind
    name: str
    key: str
    record: dict
    path: Path
    deps: tuple[str, ...] = ()
    model: str = ""
    seed: int = 0

    @property
    def record_path(self) -> Path:
        """The JSON copy of the record beside the result (read by ``--dry-run`` to explain a
        difference)."""
        if self.kind in ("data", "explain"):
            return self.path / "record.json"
        return self.path.with_suffix(".json")

    @property
    def parts(self) -> list[str]:
        return self.name.split("/")

    @property
    def stem(self) -> str:
        """The cached result's name without its key: "<model>-<method>-<metric>" (no seed)."""
        name = self.path.name if self.kind in ("data", "explain") else self.path.stem
        return name[: -len(self.key)]


@dataclass(frozen=True)
class Plan:
    """A checked config laid out as cells.

    Attributes:
        device: "cpu", "cuda" or "cuda:N" (resolved from "auto").
        threads: torch's intra-op threads per process (part of every compute cell's record:
            float sums depend on it; so, on CUDA, does the choice of deterministic kernels).
    """

    config: Config
    run_id: str
    run_dir: Path
    cache_dir: Path
    device: str
    threads: int
    cells: tuple[Cell, ...]

    @property
    def dataset(self) -> Any:
        """The run's dataset plugin (built once, by the config check)."""
        return self.config.dataset.instance

    @property
    def methods(self) -> dict[str, Any]:
        """method id -> its built method."""
        return {s.id: s.instance for s in self.config.methods}

    @property
    def metrics(self) -> dict[str, Any]:
        """metric id -> its built metric."""
        return {s.id: s.instance for s in self.config.metrics}

    def method_of(self, cell: Cell) -> Any:
        """The method of an explain or score cell."""
        return self.methods[cell.parts[1]]

    def metric_of(self, cell: Cell) -> Any:
        """The metric of a score cell."""
        return self.metrics[cell.parts[2]]

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds (``[run] seeds``, by default ``[run] seed`` alone)."""
        return self.config.run.training_seeds

    @property
    def several_seeds(self) -> bool:
        """Whether the run trains its models with more than one seed (its tables get a seed column)."""
        return len(self.seeds) > 1

    def model_config(self, cell: Cell) -> Any:
        """The ``[models.<id>]`` config of a cell's model."""
        return next(m for m in self.config.models if m.id == cell.model)

    def of_kind(self, kind: Kind) -> list[Cell]:
        return [c for c in self.cells if c.kind == kind]

    def get(self, name: str) -> Cell:
        return next(c for c in self.cells if c.name == name)

    def below(self, cell: Cell, kind: Kind) -> list[Cell]:
        """The cells of ``kind`` that depend directly on ``cell``."""
        return [c for c in self.cells if c.kind == kind and cell.name in c.deps]


# -- records ----------------------------------------------------------------------------------------


def plugin_record(spec: PluginSpec, registry: Registry) -> dict[str, Any]:
    """A configured plugin: its name, every parameter (defaults included) and its code identity."""
    cls = registry.get(spec.plugin)
    return {"plugin": spec.plugin, "params": resolved(cls, spec.as_dict()), **keys.plugin_identity(cls)}


def model_record(cfg: Any) -> dict[str, Any]:
    """A model's settings (every field of its config, defaults included) and its family's code;
    a checkpoint given by path is recorded by its content checksum, so the file, not its name,
    decides; a model loaded from elsewhere (:mod:`xaibench.models.sources`) adds its weights and
    TorchScript files' checksums and its factory's code identity."""
    settings = asdict(cfg)
    settings.pop("id")
    if settings.get("checkpoint"):
        settings["checkpoint"] = {"sha256": checksum_of(Path(settings["checkpoint"]))}
    if hasattr(cfg, "content_identity"):  # a model loaded from elsewhere: its files and code
        settings.update(cfg.content_identity())
    return {"settings": settings, **keys.plugin_identity(type(cfg))}


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when CUDA is available, else "cpu" (imports torch only for "auto")."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_threads(setting: int) -> int:
    """The intra-op thread count a run uses: the setting, or torch's current default (0)."""
    if setting > 0:
        return setting
    import torch

    return torch.get_num_threads()


def curve_keys(metric: Any, image_size: tuple[int, int]) -> dict[str, dict[str, str]]:
    """{"curves": {name: curve key}} for a metric made of engine curves (else {}): the planner's
    grouping of perturbation requests. Score cells of one explain cell that name the same curve
    key share one engine call (the executor computes each distinct request once)."""
    requests = getattr(metric, "requests", None)
    if requests is None:
        return {}
    return {"curves": {name: keys.digest({"type": type(r).__name__, **asdict(r)})
                       for name, r in requests(*image_size).items()}}


def shared_curves(plan: Plan, todo: set[str]) -> dict[str, list[str]]:
    """Score cell -> the earlier score cells of the same explain cell whose curves it reuses,
    among the cells ``todo`` (to compute in this run)."""
    out: dict[str, list[str]] = {}
    for explain in plan.of_kind("explain"):
        seen: dict[str, str] = {}
        for cell in (c for c in plan.below(explain, "score") if c.name in todo):
            for key in cell.record.get("curves", {}).values():
                if key in seen and seen[key] not in out.get(cell.name, []):
                    out.setdefault(cell.name, []).append(seen[key])
                seen.setdefault(key, cell.name)
    return out


def _cell(kind: Kind, name: str, record: dict, path_of: Any, deps: tuple[str, ...] = (), *,
          model: str = "", seed: int = 0) -> Cell:
    key = keys.digest(record)
    return Cell(kind, name, key, record, path_of(key), deps, model, seed)


def trained(model_cfg: Any) -> bool:
    """Whether the run trains this model (one model cell per training seed): an xaibench
    architecture without a ``checkpoint``; models loaded from elsewhere or from a checkpoint are
    evaluated once."""
    return not hasattr(model_cfg, "content_identity") and getattr(model_cfg, "checkpoint", None) is None


def model_seeds(config: Config, model_cfg: Any) -> list[tuple[str, int]]:
    """(the model part of its cells' names, seed) per model cell of ``model_cfg``: one per
    training seed for a trained model ("<id>@<seed>" when there are several), else one with the
    run's seed."""
    seeds = config.run.training_seeds
    if not trained(model_cfg):
        return [(model_cfg.id, config.run.seed)]
    if len(seeds) == 1:
        return [(model_cfg.id, seeds[0])]
    return [(f"{model_cfg.id}@{s}", s) for s in seeds]


# -- the plan ---------------------------------------------------------------------------------------


def plan(config: Config) -> Plan:
    """The cells of ``config`` with their keys and dependencies (no torch work)."""
    resolved_cfg = config.resolved()
    # the output folder is where the run goes and the memory budget how it is chunked, not what it
    # computes: neither is part of its id
    run_section = {k: v for k, v in resolved_cfg["run"].items() if k != "memory"}
    where_to = {**resolved_cfg, "run": {**run_section, "out": None}}
    run_id = f"{config.name}-{keys.digest(where_to, length=8)}"
    dataset_dir = Path(config.run.out) / config.dataset.plugin
    cache = dataset_dir / "cache"
    device, threads = resolve_device(config.run.device), run_threads(config.run.threads)
    compute = {"device": device.split(":")[0], "threads": threads}
    if device.startswith("cuda"):  # a run on CUDA uses torch's deterministic kernels (runner.py)
        compute["cuda_kernels"] = CUDA_KERNELS
    run = config.run

    dataset = config.dataset.instance
    data = _cell("data", "data", {"kind": "data", "dataset": plugin_record(config.dataset, DATASETS),
                                  "seed": run.seed, "files": dataset.fingerprint()},
                 lambda k: cache / "data" / k, seed=run.seed)
    cells = [data]
    for model_cfg in config.models:
        for name, seed in model_seeds(config, model_cfg):
            cells += model_cells(config, model_cfg, name, seed, data, compute, cache)
    cells += meta_cells(config, cells, {"executor": keys.code_identity(META_EXECUTOR),
                                        "batch_size": run.batch_size, "target": run.target,
                                        **compute}, cache)
    return Plan(config=config, run_id=run_id, run_dir=dataset_dir / run_id, cache_dir=cache,
                device=device, threads=threads, cells=tuple(cells))


def model_cells(config: Config, model_cfg: Any, name: str, seed: int, data: Cell, compute: dict,
                cache: Path) -> list[Cell]:
    """The model cell of ``model_cfg`` trained with ``seed`` (cells named ``name``), and its
    explain and score cells. Cached results are named by the model's id, not ``name``."""
    run, mid, image_size = config.run, model_cfg.id, config.dataset.instance.image_size
    executor = keys.code_identity(EXECUTOR)
    own = {"model": mid, "seed": seed}
    model = _cell("model", name, {"kind": "model", "model": model_record(model_cfg), "data": data.key,
                                  "seed": seed, **compute},
                  lambda k: cache / "models" / f"{mid}-{k}.pt", (data.name,), **own)
    cells = [model]
    for spec in (s for s in config.methods if applies(s, model_cfg)):
        base = f"{mid}-{spec.id}"
        explain = _cell("explain", f"{name}/{spec.id}", {
            "kind": "explain", "method": plugin_record(spec, METHODS), "executor": executor,
            "model": model.key, "data": data.key, "target": run.target, "seed": seed,
            "batch_size": run.batch_size, **compute},
            lambda k, b=base: cache / "attributions" / f"{b}-{k}", (model.name,), **own)
        cells.append(explain)
        for mspec in config.metrics:
            cells.append(_cell("score", f"{explain.name}/{mspec.id}", {
                "kind": "score", "metric": plugin_record(mspec, METRICS), "executor": executor,
                "explain": explain.key, "batch_size": run.batch_size, **compute,
                **curve_keys(mspec.instance, image_size)},
                lambda k, b=f"{base}-{mspec.id}": cache / "scores" / f"{b}-{k}.pt", (explain.name,), **own))
    return cells


def meta_cells(config: Config, cells: list[Cell], common: dict, cache: Path) -> list[Cell]:
    """The meta-evaluation's cells ([meta] set): per model and meta-evaluated metric, one cell per
    MetaQuantus test and iteration (its K perturbations' scores for every method of the model)
    and one per setting of the metric's knob sweep; each depends on the model's explain cells."""
    meta = config.meta
    if meta is None:
        return []
    wanted = [s for s in config.metrics if not meta.metrics or s.id in meta.metrics]
    out = []
    for model in (c for c in cells if c.kind == "model"):
        explains = [c for c in cells if c.kind == "explain" and c.parts[0] == model.name]
        base = {"kind": "meta", **common, "seed": model.seed, "model": model.key,
                "explain": [e.key for e in explains], "images": meta.images}
        deps, own = tuple(e.name for e in explains), {"model": model.model, "seed": model.seed}
        for spec in wanted:
            record = {**base, "metric": plugin_record(spec, METRICS)}
            for test, it in ((t, i) for t in META_TESTS for i in range(meta.iterations)):
                name, stem = f"{model.name}/{spec.id}/{test}/{it}", f"{model.model}-{spec.id}-{test}-{it}"
                out.append(_cell("meta", name, {**record, "test": test, "noise": meta.noise(test),
                                                "perturbations": meta.perturbations, "iteration": it},
                                 lambda k, n=stem: cache / "meta" / f"{n}-{k}.pt", deps, **own))
            for j, (params, _) in enumerate(meta.variants.get(spec.id, [])):
                name, stem = f"{model.name}/{spec.id}/sweep/{j}", f"{model.model}-{spec.id}-sweep-{j}"
                out.append(_cell("meta", name, {**record, "metric": {**record["metric"], "params": params}},
                                 lambda k, n=stem: cache / "meta" / f"{n}-{k}.pt", deps, **own))
    return out


# -- what is cached ------------------------------------------------------------------------------


def is_cached(cell: Cell) -> bool:
    """Whether ``cell``'s result is in the cache, complete and intact (checksums verified; nothing
    unpickled). An explain cell is complete when its record says how many shards it has and all
    of them are intact."""
    if cell.kind == "data":
        return cell.record_path.is_file()
    if cell.kind == "model" and cell.record["model"]["settings"].get("checkpoint"):
        return cell.record_path.is_file()  # a given checkpoint, already loaded with these settings
    if cell.kind == "model":
        return is_valid(cell.path)
    if cell.kind in ("score", "meta"):
        return is_valid(cell.path)
    try:
        n = json.loads(cell.record_path.read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return False
    return all(is_valid(cell.path / f"{i:05d}.pt") for i in range(n))


def previous(cell: Cell) -> dict | None:
    """The record of the newest cached cell of the same name with another key, if any (with
    several training seeds: the same seed's when one is cached, else any seed's)."""
    if cell.kind == "data":
        candidates = cell.path.parent.glob("*/record.json")
    elif cell.kind == "explain":
        candidates = cell.path.parent.glob(f"{cell.stem}*/record.json")
    else:
        candidates = cell.path.parent.glob(f"{cell.stem}*.json")
    found = [p for p in candidates if p != cell.record_path]
    if cell.kind == "score":  # <model>-<method>-<metric>-<key>.json: also matches longer names
        found = [p for p in found if len(p.stem) == len(cell.path.stem)]
    saved = []
    for path in sorted(found, key=os.path.getmtime, reverse=True):
        try:
            saved.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    def closeness(s: dict) -> tuple[bool, bool]:  # the same name first, then the same seed
        record = s.get("record") or {}
        return s.get("name") == cell.name, record.get("seed", cell.seed) == cell.seed

    return max(saved, key=closeness).get("record") if saved else None


def describe(plan: Plan) -> list[str]:
    """One line per cell: reused or to compute, and for a cell to compute what differs from the
    newest cached cell of the same name ("model resnet18: model.settings.stem 'auto' ->
    'imagenet'"). An upstream key that changed is reported as that cell's name."""
    names = {c.key: c.name for c in plan.cells}
    cached = {c.name for c in plan.cells if is_cached(c)}
    shared = shared_curves(plan, {c.name for c in plan.cells} - cached)
    lines = []
    for cell in plan.cells:
        if cell.name in cached:
            lines.append(f"reuse    {cell.kind:<8} {cell.name}")
            continue
        line = f"compute  {cell.kind:<8} {cell.name}"
        old = previous(cell)
        if old is not None:
            changes = [_readable(c, names) for c in keys.differences(old, cell.record)]
            line += ": " + "; ".join(changes)
        if cell.name in shared:
            line += f" (curves shared with {', '.join(shared[cell.name])})"
        lines.append(line)
    return lines


def _readable(change: str, names: dict[str, str]) -> str:
    """A record difference with upstream keys replaced by "<cell> changed"."""
    path, _, values = change.partition(": ")
    if path in ("data", "model", "explain"):
        new = values.rsplit(" -> ", 1)[-1].strip("'")
        return f"{names.get(new, path)} changed"
    return change
