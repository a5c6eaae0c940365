"""The method source ``captum:<Class>``: any attribution class of ``captum.attr``, by name.

A config names it ``[methods.dl] plugin = "captum:DeepLift"`` (or ``[methods."captum:DeepLift"]``);
its keys are the keywords of the class's constructor and of its ``attribute()`` that a TOML value
can give (read from their signatures and type hints), plus xaibench's own: ``baseline`` (named
reference images), ``seed`` (stochastic classes), ``layer`` and ``interpolation`` (layer
attributions) and ``feature_size`` (perturbation classes' feature groups). The built-in
``saliency``, ``input_x_gradient``, ``integrated_gradients``, ``smoothgrad``, ``guided_backprop`` and
``deconvolution`` are :class:`CaptumMethod` subclasses with xaibench's own parameters and defaults.
See docs/method-sources.md.
"""

from __future__ import annotations

import ast
import warnings
from typing import Any, ClassVar, Literal

import torch

from xaibench.budget import rows_that_fit
from xaibench.keys import module_file
from xaibench.methods.layers import to_grid, token_grid
from xaibench.methods.library import LibraryMethod, LibrarySource, bound_class, keyword_parameters
from xaibench.models.modelstate import eval_mode, find_layer
from xaibench.plugins import ParamError
from xaibench.registry import RegistryError
from xaibench.seeding import image_generator, image_seed, seeded_global_rngs

Channels = Literal["sum", "abs_sum", "max_abs"]
CHANNELS = {"sum": "signed sum over channels", "abs_sum": "sum over channels of the absolute value",
            "max_abs": "max over channels of the absolute value"}
BASELINE_NAMES = ("black", "gray", "white", "mean", "blur", "uniform")
Baseline = Literal["black", "gray", "white", "mean", "blur", "uniform"]

# classes that draw random numbers (explained image by image, the global RNGs seeded per image)
STOCHASTIC = {"GradientShap", "Lime", "KernelShap", "ShapleyValueSampling", "NoiseTunnel",
              "FeaturePermutation", "LayerGradientShap", "NeuronGradientShap"}
# classes whose baselines are a distribution of reference images
DISTRIBUTION = {"DeepLiftShap", "GradientShap", "LayerDeepLiftShap", "LayerGradientShap"}
# channel reductions of the classes whose maps are magnitudes (the rest: signed sum)
REDUCTIONS = {"Saliency": "max_abs", "GuidedBackprop": "abs_sum", "Deconvolution": "abs_sum",
              "GuidedGradCam": "abs_sum"}
# the classes that change nn.ReLU backward passes: CNNs only; LayerGradCam averages conv maps
CNN_ONLY = {"GuidedBackprop", "Deconvolution", "GuidedGradCam", "LayerGradCam", "DeepLift",
            "DeepLiftShap", "LayerDeepLift", "LayerDeepLiftShap", "LRP", "LayerLRP"}
# library keywords a config does not give: xaibench passes them (or their library default stays)
SKIP = {"inputs", "target", "additional_forward_args", "return_convergence_delta", "device_ids",
        "show_progress",
        "return_input_shape", "feature_mask", "baselines", "layer", "forward_func", "model",
        "attribution_method", "grad_kwargs", "attr_dim_summation"}
# xaibench's defaults that differ from captum's: evaluations batched
BATCHING = {"perturbations_per_eval": 16, "internal_batch_size": 64}
NOT_METHODS = {"Attribution", "GradientAttribution", "PerturbationAttribution", "LayerAttribution",
               "NeuronAttribution", "LimeBase", "DataLoaderAttribution"}


def baseline_images(images: torch.Tensor, kind: str | float, seed: int = 0) -> torch.Tensor:
    """The reference image [B, 3, H, W] for images [B, 3, H, W] in [0, 1].

    "black", "gray" and "white" are the constant images 0, 0.5 and 1 (a number: that constant);
    "mean" is each image's own mean colour (its per-channel mean over pixels), a stand-in for the
    dataset mean, which a method never sees; "blur" each image Gaussian-blurred (kernel 11, sigma
    5, as the perturbation engine's "blur"); "uniform" U(0, 1) noise drawn per image from
    ``image_generator(seed, image)``.
    """
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()
    if kind == "blur":
        from xaibench.metrics.perturbation import gaussian_blur

        return gaussian_blur(images, kernel=11, sigma=5.0)
    if kind == "uniform":
        noise = [torch.rand(x.shape, generator=image_generator(seed, x)) for x in images]
        return torch.stack(noise).to(images)
    value = {"black": 0.0, "gray": 0.5, "white": 1.0}.get(kind, kind)  # type: ignore[arg-type]
    return torch.full_like(images, float(value))



def feature_groups(images: torch.Tensor, size: int) -> torch.Tensor:
    """A feature mask [B, 3, H, W]: squares of ``size`` x ``size`` pixels, all channels together,
    numbered row by row (captum's ``feature_mask``)."""
    h, w = images.shape[-2:]
    rows = torch.arange(h, device=images.device) // size
    cols = torch.arange(w, device=images.device) // size
    mask = rows[:, None] * ((w + size - 1) // size) + cols[None, :]
    return mask.expand(images.shape[0], 3, h, w)


class CaptumMethod(LibraryMethod):
    """A captum attribution class run on the pixel-space model (base of the captum methods).

    The model is put in eval mode for the call and restored (:func:`eval_mode`); the images are
    detached. Primary attributions [B, 3, H, W] are reduced over channels (``channels``); layer
    attributions are read as an image map (a ViT's patch tokens on their grid), summed over
    channels and up-sampled to the image as Grad-CAM is.
    """

    library: ClassVar[str] = "captum"
    channels: ClassVar[str] = "sum"
    inner: ClassVar[str | None] = None  # NoiseTunnel: the class it wraps
    stochastic: ClassVar[bool] = False  # explained image by image, the global RNGs seeded per image
    distribution: ClassVar[bool] = False  # baselines are a list of reference images
    layer_method: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.baseline = options.pop("baseline", None)
        self.baselines = options.pop("baselines", None)
        self.seed = options.pop("seed", 0)
        self.layer = options.pop("layer", None)
        self.interpolation = options.pop("interpolation", "bilinear")
        self.feature_size = options.pop("feature_size", None)
        self.options = options  # captum keywords: constructor's and attribute()'s

    @property
    def passes_per_image(self) -> int | None:
        steps = self.options.get("n_steps", self.options.get("nt_samples", self.options.get("n_samples")))
        return steps if isinstance(steps, int) else (1 if not self.options else None)

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Maps [B, H, W] float32 for images [B, 3, H, W] and targets [B]."""
        import captum.attr

        cls = getattr(captum.attr, self.library_class)
        x = images.detach()
        with eval_mode(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
            if not (self.stochastic or self.distribution):
                return self._explain(cls, model, x, targets)
            maps = []
            for i in range(x.shape[0]):
                with seeded_global_rngs(image_seed(self.seed, x[i]), x.device):
                    maps.append(self._explain(cls, model, x[i:i + 1], targets[i:i + 1]))
            return torch.cat(maps)

    def _explain(self, cls: type, model: torch.nn.Module, x: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
        import captum.attr

        init_names = set(list(_signature(cls.__init__))[1:])
        init = {k: v for k, v in self.options.items() if k in init_names}
        call = {k: v for k, v in self.options.items() if k not in init_names}
        if self.inner is not None:
            explainer = cls(getattr(captum.attr, self.inner)(model), **init)
        elif self.layer_method:
            explainer = cls(model, find_layer(model, self.layer), **init)
        else:
            explainer = cls(model, **init)
        if self.baseline is not None:
            call["baselines"] = baseline_images(x, self.baseline, self.seed)
        if self.baselines is not None:
            call["baselines"] = torch.cat([baseline_images(x, b, self.seed) for b in self.baselines])
        if self.feature_size is not None:
            call["feature_mask"] = feature_groups(x, self.feature_size)
        b = x.shape[0]
        if call.get("internal_batch_size") is not None:  # gradient points per pass, within [run] memory
            call["internal_batch_size"] = rows_that_fit(
                model, x[:1], grad=True, wanted=max(call["internal_batch_size"], b), least=b,
                what=self.library_class, own="[run] batch_size")
        if call.get("perturbations_per_eval") is not None:  # b inputs per perturbation, no gradients
            fit = rows_that_fit(model, x[:1], grad=False, wanted=call["perturbations_per_eval"] * b,
                                least=b, what=self.library_class, own="[run] batch_size")
            call["perturbations_per_eval"] = max(1, fit // b)
        attr = explainer.attribute(x, target=targets, **call).detach()
        if self.layer_method:
            grid = to_grid(attr, token_grid(model, tuple(x.shape[-2:]))).sum(1, keepdim=True)
            up = captum.attr.LayerAttribution.interpolate(grid, tuple(x.shape[-2:]),
                                                          interpolate_mode=self.interpolation)
            return up[:, 0].float()
        if self.channels == "max_abs":
            return attr.abs().amax(1).float()
        return (attr.abs() if self.channels == "abs_sum" else attr).sum(1).float()


def _signature(func: Any) -> dict[str, Any]:
    import inspect

    return dict(inspect.signature(func).parameters)


class ReLUBackprop(CaptumMethod):
    """What guided backpropagation and deconvolution share: captum classes that change the backward
    pass of every ``nn.ReLU`` module during the call (hooks removed afterwards, also on error);
    one forward+backward pass per image, no hyperparameters, the absolute value summed over
    channels."""

    channels = "abs_sum"
    reduction = "sum over channels of the absolute value"
    requirement = ("a ReLU network (CNN): it changes the backward pass of nn.ReLU modules; a vision "
                   "transformer has GELUs, where it would be the plain gradient")
    families = ("cnn",)
    passes_per_image = 1

    def __init__(self) -> None:
        super().__init__()


class CaptumSource(LibrarySource):
    """The ``captum`` method source: ``captum:<Class>`` for any attribution class of ``captum.attr``."""

    prefix = "captum"
    distribution = "captum"
    description = "any attribution class of captum.attr"
    docs = "https://captum.ai/api/"
    library = "captum"
    lacks = "captum.attr has no attribution class"

    def names(self) -> list[str]:
        """The attribution classes ``captum.attr`` exports: the names its ``__init__`` imports from
        ``captum.attr._core`` (read from its source: no import), less the abstract bases and the
        language-model ones."""
        path = module_file("captum.attr")
        if path is None:
            return []
        found = {alias.asname or alias.name for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("captum.attr._core")
                 for alias in node.names}
        return sorted(n for n in found - NOT_METHODS if "LLM" not in n and not n.startswith("Neuron"))

    def bind(self, name: str) -> type:
        """The method class bound to ``captum.attr.<name>``: its keyword-only parameters are the
        configurable keywords of the class's constructor and ``attribute()``, with xaibench's."""
        import captum.attr
        from captum.attr._utils.attribution import Attribution

        cls = getattr(captum.attr, name)
        if not (isinstance(cls, type) and issubclass(cls, Attribution)) or name.startswith("Neuron"):
            raise RegistryError(f"method 'captum:{name}': captum.attr.{name} is not an attribution "
                                f"class of an image (neuron attributions need a neuron, which a config "
                                f"cannot give)")
        init = _signature(cls.__init__)
        call = _signature(cls.attribute)
        params: dict[str, tuple[Any, Any]] = {}
        inner = None
        if name == "NoiseTunnel":
            inner = "Saliency"
            params["attribution"] = (str, "Saliency")
        if "layer" in init:
            params["layer"] = (str | None, None)
            params["interpolation"] = (Literal["bilinear", "nearest", "bicubic"], "bilinear")
        params.update(keyword_parameters(cls.__init__, SKIP))
        params.update({k: v for k, v in keyword_parameters(cls.attribute, SKIP).items() if k not in params})
        for key, default in BATCHING.items():
            if key in params:
                params[key] = (params[key][0], default)
        if "baselines" in call:
            if name in DISTRIBUTION:
                params["baselines"] = (tuple[Baseline | float, ...], ("black", "white"))
            else:
                params["baseline"] = (Baseline | float, "black")
        if "feature_mask" in call:
            params["feature_size"] = (int | None, None)
        if name in STOCHASTIC or "baselines" in call:
            params["seed"] = (int, 0)
        channels = REDUCTIONS.get(name, "sum")
        namespace = {
            "__module__": __name__,
            "__doc__": (f"captum's ``{name}`` (captum.attr.{name}, captum {self.version()}), run by "
                        f"xaibench.\n\n"
                        f"Its parameters are the keywords of captum's constructor and ``attribute()`` "
                        f"({self.docs}); see docs/method-sources.md for baselines, seeds and the reduction."),
            "library_class": name, "inner": inner, "stochastic": name in STOCHASTIC,
            "distribution": name in DISTRIBUTION, "layer_method": "layer" in init, "channels": channels,
            "reduction": ("layer attribution summed over channels, up-sampled" if "layer" in init
                          else CHANNELS[channels]),
            "families": ("cnn",) if name in CNN_ONLY else ("cnn", "vit"),
            "requirement": ("a CNN (ReLU networks; a layer with a [B, C, h, w] map)" if name in CNN_ONLY
                            else "any model"),
        }
        bound = bound_class(CaptumMethod, f"captum:{name}", params, namespace)
        if inner is not None:
            _bind_inner(bound)
        return bound


def _bind_inner(bound: type) -> None:
    """NoiseTunnel: its ``attribution`` key names the wrapped class (checked when built)."""
    original = bound.__init__

    def __init__(self: Any, **values: Any) -> None:
        original(self, **values)
        import captum.attr

        self.inner = self.options.pop("attribution")
        if not isinstance(getattr(captum.attr, self.inner, None), type):
            raise ParamError("attribution", f"captum.attr has no class {self.inner!r}")

    __init__.__signature__ = original.__signature__  # type: ignore[attr-defined]
    __init__.__annotations__ = original.__annotations__
    bound.__init__ = __init__  # type: ignore[method-assign]


CAPTUM = CaptumSource()
