"""Base classes and parameter checking shared by every plugin (methods, metrics, datasets).

A plugin's hyperparameters are the keyword-only arguments of its ``__init__``, with type hints;
the config loader checks every TOML value against those hints before building the plugin, and
the plugin checks ranges in ``__init__`` with :func:`check_range` / :func:`check_choice`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # torch is imported by the plugins themselves, not by config checking
    from pathlib import Path

    import torch

    from xaibench.datasets.splits import Splits


class ParamError(ValueError):
    """A hyperparameter with a wrong type or an out-of-range value.

    Args:
        key: the parameter's name.
        problem: what is wrong and what is allowed.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ConfigError(ValueError):
    """A config that cannot run: names the file, the key and what is allowed."""


class ContractError(RuntimeError):
    """A plugin broke its contract at run time (e.g. a method left the model changed): the message
    says what, in plain words (:mod:`xaibench.contract`)."""


class DataError(ValueError):
    """Data on disk that cannot be loaded: the message names the file (or folder) and the fix.

    Raised by dataset plugins at load time (a missing, unreadable or truncated image, a mask of
    another size than its image, a label outside the class list, an empty class folder, ...).
    """


def check_range(
    key: str, value: float, *, low: float | None = None, high: float | None = None
) -> None:
    """Raise ParamError unless ``low <= value <= high`` (either bound optional)."""
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ParamError(key, f"must be in [{lo}, {hi}], got {value!r}")


def check_choice(key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise ParamError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ParamError(key, f"must be one of {', '.join(map(repr, choices))}; got {value!r}")


# -- type checking of config values against type hints -----------------------------------------


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "none (omit the key)"
    return getattr(hint, "__name__", str(hint))


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a type hint and return it in the hinted type.

    ints are accepted for floats; lists become tuples for ``tuple[X, ...]`` hints.

    Raises:
        ParamError: naming the key, the expected type and the value received.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        check_choice(key, value, typing.get_args(hint))
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(key, value, option)
            except ParamError:
                continue
        raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        items = [coerce(key, v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is type(None):
        if value is None:
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")


def parameters(cls: type) -> dict[str, tuple[Any, Any]]:
    """The keyword-only hyperparameters of ``cls``: name -> (type hint, default). A dataclass's
    hints are resolved per field in the module of the class that declares it (inherited
    settings, e.g. the perturbation engine's, keep their own module's names)."""
    hints = typing.get_type_hints(cls if dataclasses.is_dataclass(cls) else cls.__init__)
    params = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            params[name] = (hints.get(name, Any), p.default)
    return params


def resolved(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Every declared parameter of ``cls`` with its value: the checked value from ``values``, or
    the default (for cache keys and manifests: defaults included, nothing listed by hand)."""
    return {key: coerce(key, values[key], hint) if key in values else default
            for key, (hint, default) in parameters(cls).items()}


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from config values after checking names and types.

    Raises:
        ParamError: an unknown key (listing the allowed ones), a missing required key, a wrong
            type, or an out-of-range value reported by the plugin itself.
    """
    params = parameters(cls)
    for key in values:
        if key not in params:
            allowed = ", ".join(sorted(params)) or "(no parameters)"
            raise ParamError(key, f"unknown key; allowed keys: {allowed}")
    kwargs = {}
    for key, (hint, default) in params.items():
        if key in values:
            kwargs[key] = coerce(key, values[key], hint)
        elif default is inspect.Parameter.empty:
            raise ParamError(key, f"required key missing ({_describe(hint)})")
    return cls(**kwargs)


# -- plugin bases --------------------------------------------------------------------------------


class Method:
    """Base of explainers: ``attribute(model, images, targets) -> Tensor[B, H, W]``.

    Subclasses set ``reduction`` (how channels become one map), ``uses_model`` (False for
    controls that ignore the model) and implement :meth:`attribute`. A method that cannot explain
    every model narrows ``families`` (see :mod:`xaibench.families`: "cnn", "vit") and states
    ``requirement`` in words; one that needs particular architectures also overrides
    :meth:`supports`.
    """

    reduction: ClassVar[str] = "n/a"
    uses_model: ClassVar[bool] = True
    requirement: ClassVar[str] = "any model"
    families: ClassVar[tuple[str, ...]] = ("cnn", "vit")

    def supports(self, arch: str) -> bool:
        """Whether this method can explain models of architecture ``arch`` (config-time check).

        By default: whether the architecture's family (:func:`xaibench.families.arch_family`) is
        one of ``families``; a name whose family only the built model can tell passes here and
        is checked with :meth:`supports_family` once the model is built.
        """
        from xaibench.families import arch_family

        family = arch_family(arch)
        return family is None or self.supports_family(family)

    def supports_family(self, family: str) -> bool:
        """Whether this method can explain models of ``family`` ("cnn", "vit"; from
        ``xaibench.methods.layers.model_family(model)`` for a built model)."""
        return family in self.families

    @property
    def passes_per_image(self) -> int | None:
        """Forward+backward passes of the model per explained image, where known (for costs)."""
        return None

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Attribution maps [B, H, W] float32 for images [B, 3, H, W] and targets [B]."""
        raise NotImplementedError


@dataclass
class MetricOutput:
    """What a metric returns for a batch.

    Attributes:
        scores: column name -> per-image scores [B]; the metric's main column has its name.
        curves: curve name -> per-image curves [B, steps+1] (may be empty).
    """

    scores: dict[str, torch.Tensor]
    curves: dict[str, torch.Tensor] = field(default_factory=dict)


class Metric:
    """Base of metrics: configuration only; the maths lives in the module's pure functions.

    ``higher_is_better`` is the direction of every score column; ``directions`` overrides it
    per score key (e.g. ``{"lerf": False}``), and ``None`` there marks an informational column
    that the leaderboard reports but does not rank. A metric with ``needs_method`` (e.g. a
    sanity check that recomputes maps) gets the method as ``evaluate(..., method=method)``.
    """

    higher_is_better: ClassVar[bool] = True
    directions: ClassVar[dict[str, bool | None]] = {}
    requires_masks: ClassVar[bool] = False
    needs_method: ClassVar[bool] = False  # evaluate() also takes method= (it recomputes maps)

    @classmethod
    def direction(cls, key: str) -> bool | None:
        """Whether higher is better for score ``key`` (None: informational, not ranked)."""
        return cls.directions.get(key, cls.higher_is_better)

    def evaluate(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        attributions: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> MetricOutput:
        """Per-image scores for images [B,3,H,W], targets [B], attributions [B,H,W]."""
        raise NotImplementedError

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ParamError when this metric cannot run on images of this size."""


class Dataset:
    """Base of datasets: a factory for train/val/test splits and their metadata.

    Subclasses implement :meth:`load` and the cheap, config-time :attr:`has_masks` and
    :attr:`image_size`, so that runs are checked before any data is read.
    """


    @property
    def has_masks(self) -> bool:
        raise NotImplementedError

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images the loader yields."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        """The class count when known at config time without reading images (a model loaded from
        elsewhere is checked against it then); None: checked once the data is loaded."""
        return None

    @property
    def trainable(self) -> bool:
        """Whether the train and validation splits hold images (config-time). False for data
        that is only evaluated on (e.g. ``ilsvrc`` with ``test_fraction = 1``): only models
        loaded from elsewhere can be benchmarked on it."""
        return True

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """Build (or read from ``cache_dir``) the three splits."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of the data on disk the splits are read from ("" for generated data): part of
        every cache key downstream, so changed files are never scored with stale results."""
        return ""

    def cache_file(self, cache_dir: Path, seed: int, content: str = "") -> Path:
        """Where the decoded splits are cached: a file keyed by everything this instance holds
        (its attributes, set from its parameters), its code, the seed and ``content`` (a
        fingerprint of the files read), so one folder can hold the splits of many settings."""
        from pathlib import Path

        from xaibench.keys import digest, plugin_identity
        from xaibench.registry import DATASETS

        name = next(iter(DATASETS.names_for(type(self))), type(self).__name__.lower())
        key = digest({"state": vars(self), "code": plugin_identity(type(self)), "seed": seed,
                      "content": content})
        return Path(cache_dir) / f"{name}-{key}.pt"
