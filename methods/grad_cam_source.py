"""The method source ``grad-cam:<Class>``: any CAM class of pytorch-grad-cam (``pytorch_grad_cam``), by name.

A config names it ``[methods.cam] plugin = "grad-cam:GradCAMPlusPlus"`` (or
``[methods."grad-cam:ScoreCAM"]``); its keys are the keywords of the class's constructor and of its
call (``aug_smooth``, ``eigen_smooth``) that a TOML value can give, read from their signatures, plus
xaibench's ``layer`` (default: the model family's Grad-CAM layer,
:func:`xaibench.methods.layers.default_cam_layer`; a vision transformer's tokens are reshaped to
their grid as the CAM's ``reshape_transform``), ``batch_size`` for ScoreCAM (which reads it as an
attribute) and ``seed`` for the classes that draw from numpy's global generator. The map is the
library's output: each image's CAM, ReLU'd, scaled to [0, 1] and resized to the image with OpenCV.
See docs/method-sources.md.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from xaibench.keys import module_file
from xaibench.methods.layers import to_grid, token_grid
from xaibench.methods.library import LibraryMethod, LibrarySource, bound_class, keyword_parameters
from xaibench.models.modelstate import eval_mode, find_layer
from xaibench.registry import RegistryError
from xaibench.seeding import image_seed

# the library's keywords that a config does not give: xaibench passes them or the default stays
SKIP = {"model", "target_layers", "reshape_transform", "input_tensor", "targets", "ablation_layer",
        "tta_transforms", "detach", "compute_input_gradient", "uses_gradients"}
# classes that draw from numpy's global generator (RandomCAM; KPCA_CAM through scikit-learn's solver)
STOCHASTIC = {"RandomCAM", "KPCA_CAM"}
# classes read as an attribute, not a keyword: ScoreCAM's batch size (the library's fallback: 16)
ATTRIBUTES = {"ScoreCAM": {"batch_size": (int, 16)}}
# keywords whose default (None) tells no type
HINTS = {("KPCA_CAM", "gamma"): float | None}
# CNNs only: FullGrad reads the biases of every Conv2d/BatchNorm2d (it takes no layer);
# AblationCAM replaces a conv map's channels (a token layer needs the library's AblationLayerVit)
CNN_ONLY = {"FullGrad", "AblationCAM"}
NO_LAYER = {"FullGrad"}
# FullGrad multiplies every biased layer's gradient by its bias: the joint models' explainer branch
# has biased layers whose maps do not line up with that (the library raises)
EXCLUDED = {"FullGrad": ("joint_",)}
REQUIREMENTS = {"FullGrad": "a CNN other than the joint models (it reads every Conv2d/BatchNorm2d bias)",
                "AblationCAM": "a CNN (it ablates the channels of a conv map)"}


@contextlib.contextmanager
def kept_gradients(model: torch.nn.Module) -> Iterator[None]:
    """Every parameter's ``.grad`` restored after the block (pytorch-grad-cam calls
    ``model.zero_grad()`` and ``loss.backward()``, which write them)."""
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, grad in grads:
            p.grad = grad


class GradCamMethod(LibraryMethod):
    """A pytorch-grad-cam class run on the pixel-space model (base of the ``grad-cam:`` methods).

    The CAM object is built on ``[layer]`` with a vision transformer's token reshape
    (:func:`~xaibench.methods.layers.to_grid`) as its ``reshape_transform`` and called with
    ``ClassifierOutputTarget(target)`` per image; its hooks are released afterwards, the model's
    train flags, ``requires_grad`` flags and parameter gradients restored. The map is the
    library's float32 array, as a tensor on the images' device.
    """

    library: ClassVar[str] = "grad-cam"
    stochastic: ClassVar[bool] = False
    uses_layer: ClassVar[bool] = True
    excluded: ClassVar[tuple[str, ...]] = ()  # architecture-name prefixes it cannot explain

    def supports(self, arch: str) -> bool:
        return not arch.startswith(self.excluded) and super().supports(arch)

    def __init__(self, **options: Any) -> None:
        self.layer = options.pop("layer", None)
        self.seed = options.pop("seed", 0)
        self.attributes = {k: options.pop(k) for k in ATTRIBUTES.get(self.library_class, {})}
        self.options = options  # the library's keywords: constructor's and call's

    @property
    def passes_per_image(self) -> int | None:
        if self.library_class in ("GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM",
                                  "EigenCAM", "EigenGradCAM", "GradCAMElementWise"):
            return 6 if self.options.get("aug_smooth") else 1
        return None

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The library's maps [B, H, W] (each in [0, 1]) for images [B, 3, H, W] and targets [B]."""
        from xaibench.seeding import seeded_global_rngs

        x = images.detach()
        with eval_mode(model), kept_gradients(model), torch.enable_grad():
            if not self.stochastic:
                return self._explain(model, x, targets)
            maps = []
            for i in range(x.shape[0]):
                with seeded_global_rngs(image_seed(self.seed, x[i]), x.device):
                    maps.append(self._explain(model, x[i:i + 1], targets[i:i + 1]))
            return torch.cat(maps)

    def _explain(self, model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import inspect

        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, self.library_class)
        init_names = set(inspect.signature(cls.__init__).parameters)
        init = {k: v for k, v in self.options.items() if k in init_names}
        call = {k: v for k, v in self.options.items() if k not in init_names}
        grid = token_grid(model, tuple(x.shape[-2:]))
        layers = [] if not self.uses_layer else [find_layer(model, self.layer)]
        cam = cls(model, layers, reshape_transform=None if grid is None else lambda t: to_grid(t, grid),
                  **init)
        for key, value in self.attributes.items():
            setattr(cam, key, value)
        try:  # a fresh leaf that needs gradients: the layer's gradient flows with frozen weights too
            out = cam(x.clone().requires_grad_(True), [ClassifierOutputTarget(int(t)) for t in targets],
                      **call)
        finally:
            cam.activations_and_grads.release()
        return torch.from_numpy(out).to(device=x.device, dtype=torch.float32)


class GradCamSource(LibrarySource):
    """The ``grad-cam`` method source: ``grad-cam:<Class>`` for any CAM class of pytorch-grad-cam."""

    prefix = "grad-cam"
    distribution = "grad-cam"
    description = "any CAM class of pytorch_grad_cam"
    docs = "https://github.com/jacobgil/pytorch-grad-cam"
    library = "pytorch-grad-cam"
    lacks = "pytorch_grad_cam has no CAM class"

    def names(self) -> list[str]:
        """The CAM classes ``pytorch_grad_cam`` exports: the names its ``__init__`` imports whose
        class derives from ``BaseCAM`` (read from the sources: no import)."""
        path = module_file("pytorch_grad_cam")
        if path is None:
            return []
        bases: dict[str, set[str]] = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytorch_grad_cam."):
                bases.update(_class_bases(path.parent, node.module, {a.name for a in node.names}))
        cams = {"BaseCAM"}
        while True:
            more = {name for name, b in bases.items() if b & cams} - cams
            if not more:
                return sorted(cams - {"BaseCAM"})
            cams |= more

    def bind(self, name: str) -> type:
        """The method class bound to ``pytorch_grad_cam.<name>``: its keyword-only parameters are the
        configurable keywords of the class's constructor and call, with xaibench's."""
        import pytorch_grad_cam
        from pytorch_grad_cam.base_cam import BaseCAM

        cls = getattr(pytorch_grad_cam, name, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseCAM)):
            raise RegistryError(f"method 'grad-cam:{name}': pytorch_grad_cam.{name} is not a CAM class")
        params: dict[str, tuple[Any, Any]] = {}
        if name not in NO_LAYER:
            params["layer"] = (str | None, None)
        for func in (cls.__init__, cls.__call__):
            found = keyword_parameters(func, SKIP)
            for (cam, key), hint in HINTS.items():
                if cam == name:
                    found[key] = (hint, None)
            params.update({k: v for k, v in found.items() if k not in params})
        params.update(ATTRIBUTES.get(name, {}))
        if name in STOCHASTIC:
            params["seed"] = (int, 0)
        namespace = {
            "__module__": __name__,
            "__doc__": (f"pytorch-grad-cam's ``{name}`` (pytorch_grad_cam.{name}, grad-cam "
                        f"{self.version()}), run by xaibench.\n\n"
                        f"Its parameters are the keywords of the class's constructor and call ({self.docs}); "
                        f"each map is the library's: ReLU'd, scaled to [0, 1] per image and resized to the "
                        f"image with OpenCV. See docs/method-sources.md."),
            "library_class": name, "stochastic": name in STOCHASTIC, "uses_layer": name not in NO_LAYER,
            "reduction": "the library's CAM: ReLU, scaled to [0, 1] per image",
            "families": ("cnn",) if name in CNN_ONLY else ("cnn", "vit"),
            "requirement": REQUIREMENTS.get(name, "any model"), "excluded": EXCLUDED.get(name, ()),
        }
        return bound_class(GradCamMethod, f"grad-cam:{name}", params, namespace)


def _class_bases(package: Path, module: str, names: set[str]) -> dict[str, set[str]]:
    """{class: names of its bases} of the classes ``names`` defined in ``module`` (a file of the
    package in folder ``package``)."""
    path = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return {}
    return {node.name: {b.id for b in node.bases if isinstance(b, ast.Name)}
            for node in tree.body if isinstance(node, ast.ClassDef) and node.name in names}


GRAD_CAM = GradCamSource()
