"""Experiment configs: TOML files read into frozen dataclasses and checked before any compute.

A config has five sections::

    [run]                 seed, seeds, device, batch_size, out, bootstrap, target, threads, memory
    [dataset]             name = <dataset plugin>, then the plugin's parameters
    [models.<id>]         arch and training settings (bench/models.py: ModelConfig)
    [methods.<id>]        optional plugin = <method plugin> (default: <id>), optional
                          models = [<model ids>] (default: every model the method supports),
                          then its parameters
    [metrics.<id>]        optional plugin = <metric plugin> (default: <id>), then its parameters
    [meta]                optional: the meta-evaluation's settings (xaibench.meta.settings)

Every name is checked against the registries (from package metadata, without importing any
plugin) before any plugin is built; then every parameter is checked against the plugin's
keyword-only constructor arguments and their type hints, and the plugins check their ranges.
Any problem raises :class:`ConfigError` naming the file, the key and what is allowed.

Each plugin is built once, here: the checked :class:`Config` carries the built dataset, methods
and metrics (``PluginSpec.instance``), and the plan hands them to the run. Plugin modules import
torch at their top only as ``import torch``; the command line loads torch lazily (the standard
library's ``importlib.util.LazyLoader``), so these checks finish before torch is loaded unless a
plugin uses it while being built. Layer names are checked last, on the architectures, with torch.
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from xaibench.errors import ConfigError, ParamError
from xaibench.meta.settings import parse_meta
from xaibench.models.families import explains
from xaibench.params import build
from xaibench.registry import DATASETS, METHODS, METRICS, MODELS, Registry, RegistryError

SECTIONS = ("run", "dataset", "models", "methods", "metrics", "meta")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The ``[run]`` section.

    Attributes:
        seed: seeds data generation, training, seeded methods and the bootstrap.
        seeds: the training seeds (default: ``[seed]``): every trained model is trained once per
            seed, and every method explains and every metric scores each seed's model (seeded
            methods draw from that seed). Data and the bootstrap stay seeded by ``seed``; models
            loaded rather than trained are evaluated once, with ``seed``. A non-empty list of
            distinct non-negative integers.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        batch_size: images per batch when explaining and scoring.
        out: output folder; the run goes to <out>/<dataset>/<config>-<hash>/.
        bootstrap: resamples for the 95% confidence intervals.
        target: the class explained and scored: the true "label" or the "predicted" class.
        threads: torch's intra-op threads per process; 0 keeps torch's default. Float results
            depend on it (summation order), so it is part of every cell's key; fix it to compare
            runs across machines or process counts (under torchrun each process gets this many).
        memory: the memory budget for the work on top of the model and the batch: "auto" (half
            the free memory of the CUDA device, or half the available RAM on the CPU, read when
            the run starts) or a size such as "2GiB", "512MiB", "1.5GB". Methods and metrics
            that evaluate many perturbations or steps split them into chunks that fit
            (:mod:`xaibench.budget`); chunking never changes what is computed, so the budget is
            not part of any cache key or of the run's id.
    """

    seed: int = 0
    seeds: tuple[int, ...] | None = None
    device: str = "auto"
    batch_size: int = 32
    out: str = "results"
    bootstrap: int = 1000
    target: Literal["label", "predicted"] = "label"
    threads: int = 0
    memory: str = "auto"

    def __post_init__(self) -> None:
        from xaibench.budget import parse_memory

        parse_memory(self.memory)
        if self.batch_size < 1:
            raise ParamError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.threads < 0:
            raise ParamError("threads", f"must be >= 0 (0: torch's default), got {self.threads}")
        if self.bootstrap < 100:
            raise ParamError("bootstrap", f"must be >= 100, got {self.bootstrap}")
        check_seeds(self.seeds)
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ParamError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {dev!r}")


    @property
    def training_seeds(self) -> tuple[int, ...]:
        """The seeds trained models are trained with: ``seeds``, or ``(seed,)``."""
        return self.seeds if self.seeds is not None else (self.seed,)

    def resolved(self) -> dict[str, Any]:
        """The section as plain data; ``seeds`` only when it is not the default ``[seed]`` (so a
        config with one seed keeps its run id whether or not it spells ``seeds`` out)."""
        out = asdict(self)
        if self.training_seeds == (self.seed,):
            out.pop("seeds")
        else:
            out["seeds"] = list(self.seeds)
        return out


def check_seeds(seeds: tuple[int, ...] | None) -> None:
    """Raise ParamError unless ``seeds`` is None or a non-empty tuple of distinct integers >= 0."""
    if seeds is None:
        return
    example = "e.g. seeds = [0, 1, 2]"
    if not seeds:
        raise ParamError("seeds", f"must list at least one seed, got []; {example}")
    if any(s < 0 for s in seeds):
        raise ParamError("seeds", f"must be integers >= 0, got {list(seeds)}; {example}")
    if len(set(seeds)) != len(seeds):
        raise ParamError("seeds", f"must be distinct, got {list(seeds)}; list each seed once, {example}")


@dataclass(frozen=True)
class PluginSpec:
    """One configured plugin: its id in the run, the registry name, its parameters as given and,
    once the config is checked, the plugin built from them (the one instance the run uses)."""

    id: str
    plugin: str
    params: tuple[tuple[str, Any], ...] = ()
    models: tuple[str, ...] | None = None
    instance: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Config:
    """A whole, checked experiment."""

    name: str
    source: str
    run: RunConfig
    dataset: PluginSpec
    models: tuple[Any, ...]  # tuple[ModelConfig, ...]; typed loosely to keep torch unimported
    methods: tuple[PluginSpec, ...]
    metrics: tuple[PluginSpec, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)
    meta: Any = None  # MetaConfig of the [meta] section (xaibench.meta.settings), or None

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain data (for hashes and manifests)."""
        return {
            "name": self.name,
            "run": self.run.resolved(),
            "dataset": {"name": self.dataset.plugin, **self.dataset.as_dict()},
            "models": {m.id: asdict(m) for m in self.models},
            "methods": {m.id: {"plugin": m.plugin, **({"models": list(m.models)} if m.models else {}),
                               **m.as_dict()} for m in self.methods},
            "metrics": {m.id: {"plugin": m.plugin, **m.as_dict()} for m in self.metrics},
            **({"meta": self.meta.resolved()} if self.meta is not None else {}),
        }


# -- locating configs ---------------------------------------------------------------------------


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``xaibench run <name>``)."""
    return sorted(p.name[:-5] for p in resources.files("xaibench.configs").iterdir()
                  if p.name.endswith(".toml"))


def locate(name_or_path: str) -> tuple[str, str]:
    """(config name, TOML text) for a shipped config name or a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path:
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path!r} not found")
        return path.stem, path.read_text()
    if name_or_path in shipped_configs():
        return name_or_path, resources.files("xaibench.configs").joinpath(
            f"{name_or_path}.toml").read_text()
    raise ConfigError(
        f"unknown dataset or config {name_or_path!r}; shipped configs: "
        f"{', '.join(shipped_configs())}; datasets: {', '.join(DATASETS.names())}. "
        f"Give one of those names or a path to a .toml file")


# -- overrides ---------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (path, value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. run.seed=1")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in SECTIONS or not all(path):
        raise ConfigError(f"--set {text!r}: the key must start with one of "
                          f"{', '.join(SECTIONS)} and name a key, e.g. run.seed=1")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is not a table")
        node[path[-1]] = value
    return raw


@dataclass(frozen=True)
class Where:
    """Where a config's values come from, for messages: the file (``str(where)``), and the
    command-line arguments that set some of its keys.

    Attributes:
        source: the config file (or "xaibench.evaluate").
        given: (key path, the argument as given, e.g. "--set metrics.aopc.steps=-1"), in order.
    """

    source: str
    given: tuple[tuple[tuple[str, ...], str], ...] = ()

    def __str__(self) -> str:
        return self.source

    def at(self, table: str, key: str | None = None) -> str:
        """The argument that set ``key`` of ``[table]`` (or a table above it), else the file."""
        path = (*table.split("."), *([key] if key else []))
        for set_path, shown in reversed(self.given):
            if path[:len(set_path)] == set_path:
                return shown
        return self.source


def _given(overrides: list[str], shown: dict[str, str] | None) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(key path, argument as given) of each override (``shown``: how an option other than
    ``--set`` was typed, by its override text)."""
    return tuple((tuple(parse_override(text)[0]), (shown or {}).get(text, f"--set {text}"))
                 for text in overrides)


# -- checking ------------------------------------------------------------------------------------


def _plugin_specs(section: str, raw: Any, registry: Registry, where: Where) -> list[PluginSpec]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{section}] must be a table of tables, e.g. [{section}.<id>]")
    specs = []
    for pid, values in raw.items():
        label = f"{section}.{pid}"
        if not isinstance(values, dict):
            raise ConfigError(f"{where.at(label)}: [{label}] must be a table, got {values!r}")
        values = dict(values)
        plugin = values.pop("plugin", pid)
        if not isinstance(plugin, str):
            raise ConfigError(f"{where.at(label, 'plugin')}: [{label}] plugin: expected a "
                              f"{registry.kind} name, got {plugin!r}")
        try:
            registry.check(plugin)
        except RegistryError as exc:
            raise ConfigError(f"{where.at(label, 'plugin')}: [{label}] {exc}") from None
        models = values.pop("models", None) if section == "methods" else None
        if models is not None and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
            raise ConfigError(f"{where.at(label, 'models')}: [{label}] models: expected a list of "
                              f"model ids, got {models!r}")
        specs.append(PluginSpec(pid, plugin, tuple(sorted(values.items())),
                                None if models is None else tuple(models)))
    return specs


def _built(spec: PluginSpec, registry: Registry, label: str, where: Where,
           given: Mapping[str, Any] | None = None) -> PluginSpec:
    """``spec`` with its plugin built (keys, types and ranges checked), or the instance ``given``
    under ``label`` (a plugin made in Python, e.g. the ``memory`` dataset of your tensors)."""
    if given and label in given:
        return replace(spec, instance=given[label])
    try:
        return replace(spec, instance=build(registry.get(spec.plugin), spec.as_dict()))
    except ParamError as exc:
        raise ConfigError(f"{where.at(label, exc.key)}: [{label}] {exc}") from None
    except RegistryError as exc:  # a sourced name its library cannot bind
        raise ConfigError(f"{where.at(label, 'plugin')}: [{label}] {exc}") from None


def _dataset_spec(raw: dict[str, Any], where: Where) -> PluginSpec:
    data = dict(raw["dataset"])
    if "name" not in data:
        raise ConfigError(f"{where}: [dataset] name: required key missing (a dataset plugin: "
                          f"{', '.join(DATASETS.names())})")
    dataset_name = data.pop("name")
    try:
        DATASETS.check(dataset_name)
    except RegistryError as exc:
        raise ConfigError(f"{where.at('dataset', 'name')}: [dataset] name: {exc}") from None
    return PluginSpec("dataset", dataset_name, tuple(sorted(data.items())))


def _model(mid: str, values: Any, where: Where, given: Mapping[str, Any] | None = None) -> Any:
    """The model config of ``[models.<mid>]``: its architecture or source looked up, its keys,
    types and ranges checked (or the config ``given`` under ``models.<mid>``, made in Python)."""
    label = f"models.{mid}"
    if given and label in given:
        return given[label]
    if not isinstance(values, dict):
        raise ConfigError(f"{where.at(label)}: [{label}] must be a table, got {values!r}")
    arch = values.get("arch", "resnet18")
    source = arch.split(":", 1)[0] if isinstance(arch, str) else None
    if source not in MODELS:
        raise ConfigError(f"{where.at(label, 'arch')}: [{label}] arch: unknown architecture or model "
                          f"source {source or arch!r}; known: {', '.join(MODELS.names())} (a source "
                          f"takes a name, e.g. 'torchvision:resnet50', 'timm:deit_small_patch16_224', "
                          f"'torchscript:model.pt', 'python:my_models:make')")
    try:
        return build(MODELS.get(source), {"id": mid, "arch": arch, **values})
    except ParamError as exc:
        raise ConfigError(f"{where.at(label, exc.key)}: [{label}] {exc}") from None


def _models(raw: Any, dataset: Any, dataset_name: str, where: Where,
            given: Mapping[str, Any] | None = None) -> list[Any]:
    """The checked model configs of the [models] section, checked against the dataset."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [models] must be a table of tables, e.g. [models.resnet18]")
    height, width = dataset.image_size
    models = []
    for mid, values in raw.items():
        label = f"models.{mid}"
        model = _model(mid, values, where, given)
        try:
            model.check_image_size(height, width)
            model.check_checkpoint((height, width))
            model.check_dataset(dataset)
        except ParamError as exc:
            raise ConfigError(f"{where.at(label, exc.key)}: [{label}] {exc}") from None
        if model.requires_masks and not dataset.has_masks:
            raise ConfigError(f"{where.at(label, 'loss')}: [{label}] loss {model.loss!r} needs "
                              f"ground-truth masks, but dataset {dataset_name!r} has none; use loss = "
                              f"'unsupervised' or a dataset with masks")
        models.append(model)
    return models


def _check_methods(methods: list[PluginSpec], models: list[Any], where: Where) -> list[PluginSpec]:
    """Every method builds and explains the models it is given (or at least one of them), by
    architecture name and, where known (from the name or the built model), by family."""
    archs = {m.id: m.arch for m in models}
    cfgs = {m.id: m for m in models}
    built = []
    for spec in methods:
        label = f"methods.{spec.id}"
        spec = _built(spec, METHODS, label, where)
        method = spec.instance
        for mid in spec.models or ():
            if mid not in archs:
                raise ConfigError(f"{where.at(label, 'models')}: [{label}] models: unknown model "
                                  f"{mid!r}; models in this config: {', '.join(archs)}")
            if not explains(method, cfgs[mid].arch, cfgs[mid].family):
                raise ConfigError(f"{where.at(label, 'models')}: [{label}] method {spec.plugin!r} "
                                  f"cannot explain model {mid!r} ({archs[mid]}): it needs "
                                  f"{method.requirement}")
        if spec.models is None and not any(explains(method, m.arch, m.family) for m in models):
            raise ConfigError(f"{where.at(label)}: [{label}] method {spec.plugin!r} applies to none of "
                              f"the models ({', '.join(f'{k}: {v}' for k, v in archs.items())}): "
                              f"it needs {method.requirement}")
        built.append(spec)
    return built


def _check_references(methods: list[PluginSpec], dataset: Any, dataset_name: str, where: Where) -> None:
    """A method that takes reference images from the training or validation split needs a
    dataset that has them (see ``Method.reference_split``)."""
    for spec in methods:
        split = getattr(spec.instance, "reference_split", None)
        if split in ("train", "val") and not dataset.trainable:
            raise ConfigError(f"{where.at(f'methods.{spec.id}')}: [methods.{spec.id}] method "
                              f"{spec.plugin!r} draws reference images from the {split} split, but "
                              f"dataset {dataset_name!r} has none; use a dataset with a {split} split")


def applies(spec: PluginSpec, model_cfg: Any) -> bool:
    """Whether the configured method explains this model (its ``models`` list and the arch)."""
    return ((spec.models is None or model_cfg.id in spec.models)
            and explains(spec.instance, model_cfg.arch, model_cfg.family))


def _check_layers(methods: list[PluginSpec], models: list[Any], dataset: Any, where: Where) -> None:
    """The layer names methods are given exist in the networks they explain: each trainable
    architecture is built (untrained, on the CPU) and handed to ``Method.check_model``. Only
    when some method names a layer; models loaded from elsewhere are checked when loaded."""
    naming = [s for s in methods if getattr(s.instance, "layer", None) is not None]
    if not naming:
        return
    size, classes = dataset.image_size, dataset.num_classes or 2
    networks = {m.id: m.build(classes, size) for m in models if hasattr(m, "build")
                and any(applies(s, m) for s in naming)}
    for spec in naming:
        for mid, network in networks.items():
            if applies(spec, next(m for m in models if m.id == mid)):
                try:
                    spec.instance.check_model(network)
                except ParamError as exc:
                    label = f"methods.{spec.id}"
                    raise ConfigError(f"{where.at(label, exc.key)}: [{label}] {exc} (model "
                                      f"{mid!r})") from None


def _check_metrics(metrics: list[PluginSpec], dataset: Any, dataset_name: str,
                   where: Where) -> list[PluginSpec]:
    """Every metric builds, has the masks it needs and fits the image size."""
    built = []
    for spec in metrics:
        label = f"metrics.{spec.id}"
        spec = _built(spec, METRICS, label, where)
        metric = spec.instance
        built.append(spec)
        if metric.requires_masks and not dataset.has_masks:
            raise ConfigError(f"{where.at(label)}: [{label}] needs ground-truth masks, but dataset "
                              f"{dataset_name!r} has none; remove the metric or use a dataset "
                              f"with masks")
        try:
            metric.check_image_size(*dataset.image_size)
        except ParamError as exc:
            raise ConfigError(f"{where.at(label, exc.key)}: [{label}] {exc}") from None
    return built


def check_writable(out: str | Path, where: str = "[run] out") -> None:
    """Raise ConfigError unless folder ``out`` can be created and written into: a scratch folder
    is made and removed in ``out``'s deepest existing folder, so nothing is left behind (and a
    read-only file system counts as unwritable, whatever the permission bits say)."""
    probe = None
    try:
        probe = Path(out).resolve()
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        tempfile.TemporaryDirectory(dir=probe, prefix=".xaibench-probe-").cleanup()
    except (OSError, ValueError) as exc:
        reason = (f"cannot create a folder in {probe}: {exc.strerror}" if getattr(exc, "strerror", None)
                  else str(exc))
        raise ConfigError(f"{where}: cannot write under {out} ({reason}); choose another "
                          f"folder") from None


def _run_config(raw: dict[str, Any], where: Where) -> RunConfig:
    try:
        run = build(RunConfig, raw.get("run", {}))
    except ParamError as exc:
        raise ConfigError(f"{where.at('run', exc.key)}: [run] {exc}") from None
    check_writable(run.out, f"{where.at('run', 'out')}: [run] out")
    return run


def _check_cuda(run: RunConfig, where: Where) -> None:
    if run.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{where.at('run', 'device')}: [run] device: {run.device!r} requested "
                              f"but CUDA is not available here; use device = 'cpu' or 'auto'")


def _sections(raw: dict[str, Any], where: Where) -> None:
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; "
                          f"allowed sections: {', '.join(SECTIONS)}")
    for section in ("dataset", "models", "methods", "metrics"):
        if not raw.get(section):
            raise ConfigError(f"{where}: section [{section}] is missing or empty")


def parse(raw: dict[str, Any], *, name: str, source: str | Where,
          given: Mapping[str, Any] | None = None) -> Config:
    """Check a raw config dict and return the frozen :class:`Config`, its plugins built.

    ``given``: plugins made in Python, by label ("dataset", "models.<id>"), used instead of
    building them from ``raw`` and checked like the others (the Python API's tensors and model).

    Names are checked first, from package metadata only (no plugin imported), then every
    parameter's type and range and the rules across sections; the checks that need torch (layer
    names on the architectures, CUDA's availability) come last.

    Raises:
        ConfigError: on the first problem found, naming ``source`` (or the ``--set`` argument that
            set the key), the section and key.
    """
    where = source if isinstance(source, Where) else Where(source)
    _sections(raw, where)
    dataset_spec = _dataset_spec(raw, where)
    methods = _plugin_specs("methods", raw["methods"], METHODS, where)
    metrics = _plugin_specs("metrics", raw["metrics"], METRICS, where)
    run = _run_config(raw, where)
    dataset_spec = _built(dataset_spec, DATASETS, "dataset", where, given)
    dataset = dataset_spec.instance
    models = _models(raw["models"], dataset, dataset_spec.plugin, where, given)
    methods = _check_methods(methods, models, where)
    _check_references(methods, dataset, dataset_spec.plugin, where)
    metrics = _check_metrics(metrics, dataset, dataset_spec.plugin, where)
    _check_layers(methods, models, dataset, where)
    _check_cuda(run, where)
    meta = parse_meta(raw.get("meta"), {s.id: s for s in metrics}, dataset.image_size, where)
    return Config(name=name, source=where.source, run=run, dataset=dataset_spec, models=tuple(models),
                  methods=tuple(methods), metrics=tuple(metrics), raw=raw, meta=meta)


def load(name_or_path: str, overrides: list[str] | None = None, *,
         shown: dict[str, str] | None = None) -> Config:
    """Read, override and check a config (a shipped name or a .toml path). A problem with a value
    set by an override names the override (``--set section.key=value``, or as ``shown`` says for
    an override made from another option)."""
    name, text = locate(name_or_path)
    source = name_or_path if name_or_path.endswith(".toml") else f"configs/{name}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    raw = apply_overrides(raw, overrides or [])
    return parse(raw, name=name, source=Where(source, _given(overrides or [], shown)))
