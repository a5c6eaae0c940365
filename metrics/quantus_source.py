"""The metric source ``quantus:<Class>``: any metric class of Quantus, by name.

A config names it ``[metrics.fe] plugin = "quantus:FaithfulnessEstimate"`` (or
``[metrics."quantus:FaithfulnessEstimate"]``); its keys are the keywords of the class's constructor
and of its ``__call__`` that a TOML value can give (read from their signatures and type hints),
with Quantus' names and defaults, plus xaibench's ``seed``. The class is called once per test
shard on the run's cached maps (``a_batch``), the images and targets as numpy, the masks as
``s_batch`` where the class reads them, the run's model and device; a class that re-explains
(robustness, randomisation) gets the run's method as its ``explain_func``. Its direction and
family are Quantus' own declarations (``score_direction``, ``evaluation_category``). See
docs/metric-sources.md.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from xaibench.errors import RunError
from xaibench.keys import module_file
from xaibench.methods.library import LibrarySource, bound_class, keyword_parameters, version_of
from xaibench.plugins import Method, Metric, MetricOutput, ParamError
from xaibench.registry import RegistryError
from xaibench.seeding import derive_seed, image_seed, seeded_global_rngs

# Quantus' evaluation categories -> xaibench's families. Axiomatic metrics (Completeness,
# NonSensitivity, InputInvariance) test whether the map agrees with how the model responds to
# its input: counted as faithfulness.
FAMILIES = {"Faithfulness": "faithfulness", "Robustness": "robustness", "Randomisation": "randomisation",
            "Complexity": "complexity", "Localisation": "localisation", "Axiomatic": "faithfulness"}
CATEGORIES = tuple(FAMILIES)  # the sub-packages of quantus.metrics, in lower case
# Quantus keywords xaibench passes (or fixes): the data, the model, one score per image, quiet
SKIP = {"model", "x_batch", "y_batch", "a_batch", "s_batch", "channel_first", "explain_func",
        "explain_func_kwargs", "model_predict_kwargs", "device", "custom_batch", "return_aggregate",
        "aggregate_func", "disable_warnings", "display_progressbar", "default_plot_func"}
FIXED = {"return_aggregate": False, "disable_warnings": True, "display_progressbar": False}
# classes that need inputs a run cannot give
UNSUPPORTED = {
    "Focus": "it needs mosaics of four images (custom_batch), which a run does not make",
    "InputInvariance": "it shifts the input through the bias of the model's first module, which must be "
                       "a convolution; a run's models sit in xaibench's pixel-space wrapper",
}
NOT_METRICS = {"Metric", "BatchSufficiency"}  # the base class; Sufficiency's batched twin



def shard_seed(seed: int, images: torch.Tensor) -> int:
    """The seed of one call: ``seed`` and the exact contents of every image of the shard."""
    return derive_seed(seed, [image_seed(seed, x) for x in images])


def explain_func(method: Method, device: torch.device) -> Callable[..., Any]:
    """The run's method as a Quantus ``explain_func``: (model, inputs, targets) as numpy (or
    tensors) -> maps [B, H, W] as float32 numpy, computed on ``device``."""

    def explain(model: torch.nn.Module, inputs: Any, targets: Any, **_: Any) -> Any:
        x = torch.as_tensor(inputs, dtype=torch.float32, device=device)
        y = torch.as_tensor(targets, device=device).long().reshape(-1).expand(x.shape[0])
        with torch.enable_grad():
            maps = method.attribute(model, x, y.contiguous())
        return maps.detach().float().cpu().numpy()

    return explain


class QuantusMetric(Metric):
    """A Quantus metric class run on a shard of the run's maps (base of the ``quantus:`` metrics).

    The class is built with the configured keywords (``return_aggregate`` False, quiet) and
    called on the shard: ``x_batch`` [B, 3, H, W] and ``y_batch`` [B] as numpy, ``a_batch`` the
    cached maps [B, 1, H, W], ``s_batch`` the masks [B, 1, H, W] where the class reads them,
    ``channel_first``, the run's model and device, and the run's method as ``explain_func`` where
    the class re-explains; numpy's and torch's global generators are seeded per shard from
    ``seed`` and the shard's images, and restored. Its per-image scores are the metric's column.
    """

    library: ClassVar[str] = "quantus"
    library_class: ClassVar[str] = ""
    column: ClassVar[str] = ""
    call_keys: ClassVar[frozenset[str]] = frozenset()
    own_seed: ClassVar[bool] = False  # the Quantus class takes ``seed`` itself (MPRT, RandomLogit, ...)

    def __init__(self, **options: Any) -> None:
        self.seed = options["seed"] if self.own_seed else options.pop("seed", 0)
        self.call = {k: options.pop(k) for k in list(options) if k in self.call_keys}
        self.options = options  # the constructor's keywords
        self.instance()  # Quantus checks its own keywords' values now, at config time

    @classmethod
    def library_identity(cls) -> dict[str, str]:
        """The library's distribution, version and class: part of the cells' keys."""
        return {"distribution": cls.library, "version": version_of(cls.library), "class": cls.library_class}

    def instance(self, num_classes: int | None = None) -> Any:
        """A fresh Quantus object of the class, built with the configured keywords; where the
        config leaves the class's ``num_classes`` unset, ``num_classes`` (the model's class count)."""
        import quantus

        options = dict(self.options)
        if "num_classes" in options and options["num_classes"] is None:
            if num_classes is None:
                options.pop("num_classes")
            else:
                options["num_classes"] = num_classes
        try:
            return getattr(quantus, self.library_class)(**options, **FIXED)
        except (ValueError, TypeError, AssertionError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ParamError("plugin", f"quantus.{self.library_class} refuses these keywords: "
                                       f"{first}") from None

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None, *,
                 method: Method | None = None) -> MetricOutput:
        """Per-image scores [B] of the Quantus class for images [B, 3, H, W], targets [B],
        maps [B, H, W] and masks [B, H, W] (or None)."""
        import numpy as np

        if self.needs_method and method is None:
            raise ParamError("method", f"quantus:{self.library_class} re-explains: pass method=")
        if self.requires_masks and masks is None:
            raise ParamError("masks", f"quantus:{self.library_class} needs ground-truth masks")
        device = images.device
        arguments = {
            "model": model, "x_batch": images.detach().cpu().numpy(), "y_batch": targets.cpu().numpy(),
            "a_batch": attributions.detach().float().cpu().numpy()[:, None],
            "s_batch": masks[:, None].cpu().numpy().astype(np.float32) if self.requires_masks else None,
            "channel_first": True, "device": str(device),
            "explain_func": explain_func(method, device) if self.needs_method else None,
            **self.call,
        }
        classes = None
        if self.options.get("num_classes", 0) is None:  # RandomLogit: the model's class count
            with torch.no_grad():
                classes = int(model(images[:1]).shape[1])
        with seeded_global_rngs(shard_seed(self.seed, images), device):
            try:
                result = self.instance(classes)(**arguments)
            except Exception as exc:  # Quantus' own failure, said in one line with the class
                first = (str(exc).strip().splitlines() or [""])[0]
                raise RunError(f"metric 'quantus:{self.library_class}' failed in Quantus "
                               f"{version_of(self.library)}: {type(exc).__name__}: {first}") from exc
        return MetricOutput(scores={self.column: per_image(result, images.shape[0], self.library_class,
                                                           self.call_keys | set(self.options))})


def per_image(result: Any, batch: int, name: str, keys: set[str]) -> torch.Tensor:
    """Quantus' result as scores [B] (float32; NaN where Quantus gives NaN), or a RunError saying
    what it returned instead and which of the class's ``return_*`` keys asks for one score."""
    import numpy as np

    try:
        scores = None if isinstance(result, dict) else np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        scores = None
    if scores is not None and scores.shape == (batch,):
        return torch.from_numpy(scores).float()
    got = "a dict" if isinstance(result, dict) else (
        f"shape {scores.shape}" if scores is not None else type(result).__name__)
    flags = sorted(k for k in keys if k.startswith("return_"))
    hint = f"; set one of {', '.join(flags)} to get one score per image" if flags else ""
    raise RunError(f"metric 'quantus:{name}' returned {got} for {batch} images, not one score per "
                   f"image{hint}")


def _own_source(cls: type) -> str:
    """The source of ``cls`` and of its Quantus bases above quantus.metrics.base (where a class's
    needs are written)."""
    texts = []
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "")
        if module.startswith("quantus.metrics.") and module != "quantus.metrics.base":
            try:
                texts.append(inspect.getsource(klass))
            except (OSError, TypeError):
                continue
    return "\n".join(texts)


def _re_explains(source: str) -> bool:
    """Whether a Quantus class's source computes explanations (needs an ``explain_func``)."""
    return any(s in source for s in ("assert_explain_func", "explain_batch(", "self.explain_func("))


class QuantusSource(LibrarySource):
    """The ``quantus`` metric source: ``quantus:<Class>`` for any metric class of Quantus."""

    prefix = "quantus"
    distribution = "quantus"
    description = "any metric class of Quantus"
    docs = "https://quantus.readthedocs.io/en/latest/docs_api/quantus.metrics.html"
    kind = "metric"
    library = "quantus"
    lacks = "Quantus has no metric class"

    def categories(self) -> dict[str, str]:
        """class name -> Quantus category, read from the ``__init__.py`` of each category package
        of ``quantus.metrics`` (its source: nothing imported)."""
        found: dict[str, str] = {}
        for category in CATEGORIES:
            path = module_file(f"quantus.metrics.{category.lower()}")
            if path is None:
                continue
            for node in ast.walk(ast.parse(Path(path).read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quantus.metrics."):
                    found.update({alias.asname or alias.name: category for alias in node.names})
        return {n: c for n, c in sorted(found.items()) if n not in NOT_METRICS}

    def names(self) -> list[str]:
        return sorted(self.categories())

    def check(self, name: str) -> None:
        if name in UNSUPPORTED and self.names():
            raise RegistryError(f"metric 'quantus:{name}' cannot run in xaibench: {UNSUPPORTED[name]}")
        super().check(name)

    def bind(self, name: str) -> type:
        """The metric class bound to ``quantus.<name>``: its keyword-only parameters are the
        configurable keywords of the class's constructor and ``__call__``, and ``seed``; its
        direction, family, masks and method needs read from the class."""
        import quantus
        from quantus.helpers.enums import DataType, ModelType

        cls = getattr(quantus, name)
        if DataType.IMAGE not in cls.data_applicability or ModelType.TORCH not in cls.model_applicability:
            raise RegistryError(f"metric 'quantus:{name}': quantus.{name} does not evaluate images "
                                f"explained by torch models")
        category = cls.evaluation_category.value
        if category not in FAMILIES:
            raise RegistryError(f"metric 'quantus:{name}': Quantus category {category!r} has no "
                                f"family in xaibench ({', '.join(FAMILIES)})")
        params = keyword_parameters(cls.__init__, SKIP)
        call = {k: v for k, v in keyword_parameters(cls.__call__, SKIP).items() if k not in params}
        params.update(call)
        if "num_classes" in params:  # RandomLogit: default to the model's class count
            params["num_classes"] = (int | None, None)
        own_seed = "seed" in params
        params.setdefault("seed", (int, 0))  # MPRT, RandomLogit, ... have their own
        source = _own_source(cls)
        requires_masks = ("assert_segmentations" in source
                          or "s_batch" in inspect.signature(cls.evaluate_batch).parameters)
        higher = cls.score_direction.value == "higher"
        namespace = {
            "__module__": __name__,
            "__doc__": (f"Quantus' ``{name}`` (quantus.{name}, quantus {self.version()}: "
                        f"{category.lower()}, {'higher' if higher else 'lower'} is better), run by "
                        f"xaibench.\n\nIts parameters are the keywords of Quantus' constructor and "
                        f"``__call__`` ({self.docs}), with Quantus' defaults; ``seed`` seeds numpy's and "
                        f"torch's global generators per shard. See docs/metric-sources.md."),
            "library_class": name, "column": f"quantus:{name}", "call_keys": frozenset(call),
            "family": FAMILIES[category], "higher_is_better": higher, "requires_masks": requires_masks,
            "needs_method": _re_explains(source), "own_seed": own_seed,
        }
        return bound_class(QuantusMetric, f"quantus:{name}", params, namespace)


QUANTUS = QuantusSource()
