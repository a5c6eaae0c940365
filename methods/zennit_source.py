"""The method source ``zennit:<composite>``: any composite of zennit's registry, by name.

A config names it ``[methods.lrp] plugin = "zennit:epsilon_gamma_box"`` (the name the composite is
registered under in ``zennit.composites.COMPOSITES``) or by its class, ``zennit:EpsilonGammaBox``;
its keys are the keywords of the composite's constructor that a TOML value can give (``epsilon``,
``gamma``, ``stabilizer``, ``beta_smooth``, ``zero_params``, ...), read from its signature. The
box bounds ``low`` and ``high`` (``epsilon_gamma_box``) are pixel values, default 0 and 1, taken
through the model's normalisation as :class:`~xaibench.methods.deep_taylor.DeepTaylor` does. The
model family's canonizers (:func:`~xaibench.methods.deep_taylor.canonizers`) are registered with
the composite; the relevance pass is :func:`~xaibench.methods.deep_taylor.lrp_relevance`'s, and the
map is the relevance summed over channels, as ``lrp_epsilon_plus``. See docs/method-sources.md.
"""

from __future__ import annotations

import ast
from typing import Any, ClassVar

import torch

from xaibench.keys import module_file
from xaibench.methods.library import LibraryMethod, LibrarySource, bound_class, keyword_parameters
from xaibench.plugins import ParamError
from xaibench.registry import RegistryError

# the constructor's keywords that a config does not give: xaibench passes them or the default stays
SKIP = {"layer_map", "first_map", "canonizers", "low", "high", "name_map", "composites"}
# keywords whose default (None) tells no type, and xaibench's pixel-space box bounds
HINTS: dict[str, tuple[Any, Any]] = {"zero_params": (tuple[str, ...] | None, None)}
BOX = {"low": (float, 0.0), "high": (float, 1.0)}


class ZennitMethod(LibraryMethod):
    """A zennit composite's relevance on the pixel-space model (base of the ``zennit:`` methods).

    The composite is built with the model family's canonizers (batch norms merged, residual sums
    exposed) and, where it takes a box, ``low``/``high`` mapped through the model's normalisation;
    the relevance pass starts from the target logit and is read at the backbone's input
    (:func:`~xaibench.methods.deep_taylor.lrp_relevance`); the map is its signed sum over channels.
    """

    library: ClassVar[str] = "zennit"
    reduction: ClassVar[str] = "signed sum of relevance over channels"
    requirement: ClassVar[str] = ("a CNN (conv, linear, pooling, batch-norm and residual layers): zennit's "
                                  "composites have no rules for attention, softmax or LayerNorm")
    families: ClassVar[tuple[str, ...]] = ("cnn",)
    box: ClassVar[bool] = False
    passes_per_image = 1

    def __init__(self, **options: Any) -> None:
        self.low = options.pop("low", None)
        self.high = options.pop("high", None)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ParamError("low", f"the box's low ({self.low}) must be below its high ({self.high})")
        self.options = options

    def composite(self, model: torch.nn.Module) -> Any:
        """The zennit composite for ``model``, with its family's canonizers."""
        from zennit.composites import COMPOSITES

        from xaibench.methods.deep_taylor import canonizers

        cls = next(c for c in COMPOSITES.values() if c.__name__ == self.library_class)
        options = dict(self.options)
        if options.get("zero_params") is not None:
            options["zero_params"] = list(options["zero_params"])
        if self.box:
            options["low"], options["high"] = box_bounds(model, self.low, self.high)
        return cls(canonizers=canonizers(), **options)

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Relevance maps [B, H, W] float32 for images [B, 3, H, W] and targets [B]."""
        from xaibench.methods.deep_taylor import lrp_relevance

        return lrp_relevance(model, images, targets, self.composite(model)).sum(1).float()


def box_bounds(model: torch.nn.Module, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) [1, 3, 1, 1] of what the model's input layer sees for the pixel values ``low``
    and ``high``: through its normalisation (x - mean) / std when it has one."""
    from xaibench.methods.deep_taylor import pixel_bounds

    zero, one = pixel_bounds(model)  # the images of pixels 0 and 1: affine per channel
    device = next(model.parameters()).device
    return (zero + low * (one - zero)).to(device), (zero + high * (one - zero)).to(device)


def registered_composites() -> dict[str, str]:
    """{registered name: class name} of ``zennit.composites``' ``@register_composite`` classes (read
    from its source: no import)."""
    path = module_file("zennit.composites")
    if path is None:
        return {}
    found = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "register_composite"
                    and deco.args and isinstance(deco.args[0], ast.Constant)):
                found[deco.args[0].value] = node.name
    return found


class ZennitSource(LibrarySource):
    """The ``zennit`` method source: ``zennit:<composite>`` for any registered zennit composite."""

    prefix = "zennit"
    placeholder = "<composite>"  # what `xaibench list methods` shows after the prefix
    distribution = "zennit"
    description = "any LRP composite of zennit.composites, by registered name or class name"
    docs = "https://zennit.readthedocs.io/en/latest/reference/zennit.composites.html"

    def check(self, name: str) -> None:
        registered = registered_composites()
        if not registered:
            raise RegistryError(f"method 'zennit:{name}': zennit is not installed (pip install zennit)")
        if name not in registered and name not in registered.values():
            known = sorted(registered)
            hint = self.did_you_mean(name, [*known, *registered.values()])
            raise RegistryError(f"unknown method 'zennit:{name}': zennit.composites has no registered "
                                f"composite {name!r}; {hint}known composites: {', '.join(known)} "
                                f"(or their class names)")

    def bind(self, name: str) -> type:
        """The method class bound to the composite ``name``: its keyword-only parameters are the
        configurable keywords of the composite's constructor."""
        from zennit.composites import COMPOSITES

        cls = COMPOSITES.get(name) or next((c for c in COMPOSITES.values() if c.__name__ == name), None)
        if cls is None:
            raise RegistryError(f"unknown method 'zennit:{name}': not in zennit.composites.COMPOSITES")
        import inspect

        init = inspect.signature(cls.__init__).parameters
        params: dict[str, tuple[Any, Any]] = {}
        box = "low" in init and "high" in init
        if box:
            params.update(BOX)
        params.update(keyword_parameters(cls.__init__, SKIP | set(HINTS)))
        params.update({k: v for k, v in HINTS.items() if k in init})
        registered = next(k for k, c in COMPOSITES.items() if c is cls)
        namespace = {
            "__module__": __name__,
            "__doc__": (f"zennit's ``{registered}`` composite (zennit.composites.{cls.__name__}, zennit "
                        f"{self.version()}), run by xaibench.\n\n"
                        f"Its parameters are the keywords of the composite's constructor ({self.docs}); "
                        f"the model family's canonizers are added, and the relevance is summed over "
                        f"channels. See docs/method-sources.md."),
            "library_class": cls.__name__, "box": box,
        }
        return bound_class(ZennitMethod, f"zennit:{name}", params, namespace)


ZENNIT = ZennitSource()
