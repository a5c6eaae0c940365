"""The plugin author's API: the base classes of methods, metrics and datasets, and the helpers a
plugin's ``__init__`` uses to check its ranges (:func:`check_range`, :func:`check_choice`,
:class:`ParamError`). Parameters are declared as keyword-only ``__init__`` arguments with type
hints (:mod:`xaibench.params`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from xaibench.errors import ConfigError, ContractError, DataError, ParamError, RunError
from xaibench.params import check_choice, check_range

if TYPE_CHECKING:  # torch is imported by the plugins themselves, not by config checking
    from pathlib import Path

    import torch

    from xaibench.datasets.splits import Splits

FAMILIES = ("faithfulness", "robustness", "randomisation", "complexity", "localisation")

__all__ = ["FAMILIES", "ConfigError", "ContractError", "DataError", "Dataset", "Method", "Metric",
           "MetricOutput", "ParamError", "RunError", "check_choice", "check_range"]


# -- plugin bases --------------------------------------------------------------------------------


class Method:
    """Base of explainers: ``attribute(model, images, targets) -> Tensor[B, H, W]``.

    Subclasses set ``reduction`` (how channels become one map), ``uses_model`` (False for
    controls that ignore the model) and implement :meth:`attribute`. A method that cannot explain
    every model narrows ``families`` (see :mod:`xaibench.models.families`: "cnn", "vit") and states
    ``requirement`` in words; one that needs particular architectures also overrides
    :meth:`supports`. A method that needs reference images from the run's data (expected
    gradients draws its baselines from the training images) sets ``reference_split`` ("train",
    "val" or "test") and implements :meth:`use_references`: the run hands it that split's images
    once, before it explains anything.
    """

    reduction: ClassVar[str] = "n/a"
    uses_model: ClassVar[bool] = True
    reference_split: ClassVar[str | None] = None  # "train": gets that split's images, see use_references
    requirement: ClassVar[str] = "any model"
    families: ClassVar[tuple[str, ...]] = ("cnn", "vit")
    # forward+backward passes of the model per explained image (costs.csv), None where unknown; a
    # property in a method whose count depends on its settings
    passes_per_image: ClassVar[int | None] = None

    def supports(self, arch: str) -> bool:
        """Whether this method can explain models of architecture ``arch`` (config-time check).

        By default: whether the architecture's family (:func:`xaibench.models.families.arch_family`) is
        one of ``families``; a name whose family only the built model can tell passes here and
        is checked with :meth:`supports_family` once the model is built.
        """
        from xaibench.models.families import arch_family

        family = arch_family(arch)
        return family is None or self.supports_family(family)

    def supports_family(self, family: str) -> bool:
        """Whether this method can explain models of ``family`` ("cnn", "vit"; from
        ``xaibench.methods.layers.model_family(model)`` for a built model)."""
        return family in self.families

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise ParamError when this method's settings do not fit a built (untrained) network of
        the configured architecture (the config check calls it for methods given a ``layer``,
        before any training). By default: the ``layer`` it was given is a module of the network."""
        layer = getattr(self, "layer", None)
        if layer is not None:
            from xaibench.models.modelstate import find_layer

            try:
                find_layer(model, layer)
            except ValueError as exc:
                raise ParamError("layer", str(exc)) from None

    def use_references(self, images: torch.Tensor) -> None:
        """Receive the images of ``reference_split`` [N, 3, H, W] (uint8 0-255 as the run stores
        them, or float32 in [0, 1]; on the CPU), before the first :meth:`attribute`. Only called
        for a method whose ``reference_split`` is set."""
        raise NotImplementedError

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
    ``family`` is the property of an explanation the metric measures, one of :data:`FAMILIES`
    (Quantus's and LATEC's grouping): faithfulness (do the pixels the map ranks high matter to
    the model), robustness (does the map stay put under tiny input changes), randomisation (does
    the map change when the model does), complexity (how concentrated the map is) and
    localisation (does the map fall on the object). ``figures`` names the report's figures drawn
    for the metric's scores or curves (kinds of :data:`xaibench.report.figures.KINDS`, e.g.
    ``("aopc-steps", "aopc-grid")``).
    """

    family: ClassVar[str] = ""  # one of FAMILIES
    higher_is_better: ClassVar[bool] = True
    directions: ClassVar[dict[str, bool | None]] = {}
    requires_masks: ClassVar[bool] = False
    needs_method: ClassVar[bool] = False  # evaluate() also takes method= (it recomputes maps)
    figures: ClassVar[tuple[str, ...]] = ()  # the report's figure kinds drawn for this metric

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
