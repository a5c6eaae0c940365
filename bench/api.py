"""The Python API: ``xaibench.evaluate`` benchmarks any ``nn.Module`` on your tensors, and
``xaibench.explain`` runs one method.

``evaluate`` goes through the same path as ``xaibench run``: it writes a config (a ``memory``
dataset holding your tensors, a ``given`` model holding a private copy of your model, your
methods and metrics), checks it with the config checks and their messages (the dataset and the
model are handed to the check as built plugins, nothing is kept in the process), plans it into
keyed cells, executes and writes. The data is keyed by a hash of the tensors and the model by a hash of
its state_dict, its class and its module's source (:func:`model_key`), so with ``out`` a second
call reuses every cell whose inputs did not change, exactly as the command line does.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from xaibench import keys
from xaibench.check.guards import check_maps
from xaibench.config import parse
from xaibench.datasets import memory
from xaibench.errors import ConfigError, ParamError
from xaibench.models.classifier import Classifier
from xaibench.models.families import explains
from xaibench.models.sources import GivenModel, outputs
from xaibench.params import build
from xaibench.registry import METHODS, RegistryError
from xaibench.report.render import render
from xaibench.run.runner import run

WHERE = "xaibench.evaluate"
Data = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def _as_batch(item: Any) -> Data:
    """One item of a Dataset or DataLoader as a batch: (image(s), label(s)[, mask(s)])."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ConfigError(f"{WHERE}: data: a Dataset or DataLoader must yield (image, label) or "
                          f"(image, label, mask) tuples, got {type(item).__name__}")
    images, labels, masks = (*item, None)[:3]
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if images.dim() == 3:  # one sample from a Dataset
        images, labels = images[None], labels.reshape(1)
        masks = None if masks is None else torch.as_tensor(masks)[None]
    return images, labels, masks


def collect(data: Any) -> Data:
    """``data`` as (images, labels, masks or None): a tuple of tensors as is, else the items of a
    Dataset or DataLoader concatenated."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and isinstance(data[0], torch.Tensor) \
            and data[0].dim() == 4:
        return data[0], data[1], (data[2] if len(data) == 3 else None)
    if not isinstance(data, Iterable) and not hasattr(data, "__getitem__"):
        raise ConfigError(f"{WHERE}: data: expected (images, labels, masks or None), a Dataset or "
                          f"a DataLoader, got {type(data).__name__}")
    items = data
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):  # map-style
        items = [data[i] for i in range(len(data))]
    batches = [_as_batch(item) for item in items]
    if not batches:
        raise ConfigError(f"{WHERE}: data: no images")
    has_masks = {b[2] is not None for b in batches}
    if len(has_masks) > 1:
        raise ConfigError(f"{WHERE}: data: some items have masks and some do not")
    return (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]),
            torch.cat([torch.as_tensor(b[2]) for b in batches]) if has_masks == {True} else None)


def check_data(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
               num_classes: int) -> memory.Tensors:
    """The checked tensors on the CPU: images float32 [N,3,H,W] in [0,1], labels long [N] below
    ``num_classes``, masks bool [N,H,W] or None."""
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{WHERE}: data: {problem}")

    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise fail(f"images must be float [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    images = images.detach().to("cpu", torch.float32)
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise fail("images must be in [0, 1] (pixel space); give the model's normalisation as "
                   "mean=... and std=...")
    labels = labels.detach().cpu().reshape(-1)
    if labels.shape != (len(images),) or labels.is_floating_point():
        raise fail(f"labels must be integers [N={len(images)}], got {labels.dtype} {tuple(labels.shape)}")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise fail(f"labels run from {int(labels.min())} to {int(labels.max())}, but the model has "
                   f"{num_classes} outputs")
    if masks is not None:
        masks = masks.detach().cpu()
        if masks.shape != (len(images), *images.shape[2:]):
            raise fail(f"masks must be [N, H, W] = {(len(images), *images.shape[2:])}, got "
                       f"{tuple(masks.shape)}")
        masks = masks != 0
    return memory.Tensors(images, labels, masks, num_classes)


def wrapped(model: nn.Module, mean: Any, std: Any) -> Classifier:
    """A private copy of ``model`` behind the pixel-space wrapper (normalisation by ``mean``/``std``
    when given; without them the model takes images in [0, 1]). Layer names start with ``net.``."""
    if (mean is None) != (std is None):
        raise ConfigError(f"{WHERE}: give both mean and std, or neither")
    if mean is None:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # (x - 0) / 1 == x exactly
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"{WHERE}: mean and std need 3 values (std > 0), got {mean} and {std}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{WHERE}: model must be a torch.nn.Module, got {type(model).__name__}")
    net = copy.deepcopy(model).cpu()
    return Classifier(net, cam_layer=None, mean=mean, std=std).eval()  # type: ignore[arg-type]


def model_key(model: Classifier) -> str:
    """A hash of the wrapped model's state_dict (shapes, dtypes, bytes; normalisation included),
    the class of the network and the code of its module (and the class's own source)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    cls = type(model.net)
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    return keys.digest({"state": h.hexdigest(), "class": f"{cls.__module__}.{cls.__qualname__}",
                        "code": keys.code_identity(cls.__module__), "source": source}, length=24)


def plugin_table(kind: str, value: Any) -> dict[str, dict]:
    """``methods`` / ``metrics`` as a config section: a list of names, or {name: {param: value}}."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        if not all(isinstance(v, Mapping) for v in value.values()):
            raise ConfigError(f"{WHERE}: {kind}: expected {{name: {{param: value}}}}, got {dict(value)!r}")
        return {str(k): dict(v) for k, v in value.items()}
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return {v: {} for v in value}
    raise ConfigError(f"{WHERE}: {kind}: expected a list of names or a dict {{name: {{param: value}}}}, "
                      f"got {value!r}")


def evaluate(model: nn.Module, data: Any, *, methods: Any, metrics: Any, mean: Any = None,
             std: Any = None, device: str = "auto", batch_size: int = 32, seed: int = 0,
             out: str | None = None, progress: bool = True, meta: dict | None = None) -> pd.DataFrame:
    """Explain ``model`` on ``data`` with every method, score every map with every metric.

    Args:
        model: any ``nn.Module`` returning logits [B, C]; never modified (a copy is used).
        data: (images [N,3,H,W] float in [0,1], labels [N] long, masks [N,H,W] bool or None), or a
            ``Dataset`` / ``DataLoader`` yielding such tuples or (image, label) pairs.
        methods, metrics: a list of names, or {name: {param: value}} (as in a config file; a
            second instance of a plugin names it with "plugin"). Layer names start with ``net.``.
        mean, std: the model's input normalisation, put in front of it; None: the model takes
            images in [0, 1].
        device, batch_size, seed: as ``[run]`` in a config.
        out: also write the run folder (report, plots, caches) under ``out`` as ``xaibench run``
            does; None: nothing is kept.
        meta: the meta-evaluation's settings, as ``[meta]`` in a config (e.g. ``{"perturbations":
            5, "sweep": {"aopc": {"substrate": ["black", "blur"]}}}``); its tables, meta.csv and
            rank_stability.csv, go to the run folder, so it needs ``out``. None: no meta-evaluation.

    Returns:
        The leaderboard: the columns of leaderboard.csv, accuracy included.

    Raises:
        ConfigError: a one-line message, as for a config file, before any work.
    """
    net = wrapped(model, mean, std)
    images, labels, masks = collect(data)
    num_classes = outputs(net, tuple(images.shape[2:])) if len(images) else 0
    dataset = memory.Memory.holding(check_data(images, labels, masks, num_classes))
    name = type(model).__name__
    given = {"dataset": dataset, f"models.{name}": GivenModel.holding(net, id=name, key=model_key(net))}
    with tempfile.TemporaryDirectory(prefix="xaibench-") as scratch:
        raw = {"run": {"seed": seed, "device": device, "batch_size": batch_size,
                       "out": str(out if out is not None else scratch)},
               "dataset": {"name": "memory", "key": dataset.key},
               "models": {name: {"arch": given[f"models.{name}"].arch, "key": given[f"models.{name}"].key}},
               "methods": plugin_table("methods", methods), "metrics": plugin_table("metrics", metrics)}
        if meta is not None:
            if out is None:
                raise ConfigError(f"{WHERE}: meta: writes meta.csv to the run folder; give out= too")
            raw["meta"] = meta
        cfg = parse(raw, name="evaluate", source=WHERE, given=given)
        result = run(cfg, progress=progress, write_outputs=out is not None)
        if out is not None:
            render(result.run_dir, seed=seed)
        return result.leaderboard


def explain(model: nn.Module, images: torch.Tensor, targets: Any, method: str = "gradcam", *,
            references: torch.Tensor | None = None, **params: Any) -> torch.Tensor:
    """Attribution maps [B, H, W] float32 of ``method`` for ``images`` [B,3,H,W] and ``targets``
    (class indices [B]); ``params`` are the method's parameters, checked as in a config. The model
    (taking ``images`` as given, layer names its own) leaves exactly as it came. A method that
    draws from reference images (``expected_gradients``: training images) takes them as
    ``references`` [N,3,H,W] (float in [0,1], or uint8).

    Raises:
        ConfigError: an unknown method or parameter, or a model the method cannot explain.
    """
    from xaibench.methods.layers import model_family

    where = f"xaibench.explain: [methods.{method}]"
    try:
        explainer = build(METHODS.get(method), params)
    except (RegistryError, ParamError) as exc:
        raise ConfigError(f"{where} {exc}") from None
    family = model_family(model)
    if not explains(explainer, family=family):
        raise ConfigError(f"{where} method {method!r} cannot explain this model (a {family}): it "
                          f"needs {explainer.requirement}")
    if explainer.reference_split is not None:
        if references is None:
            raise ConfigError(f"{where} method {method!r} needs reference images (its "
                              f"{explainer.reference_split} split): pass references=<images [N,3,H,W]>")
        explainer.use_references(references)
    targets = torch.as_tensor(targets, device=images.device).long().reshape(-1)
    maps = explainer.attribute(model, images, targets)
    check_maps(maps, images, method, 0)
    return maps
