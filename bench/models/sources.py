"""Models trained elsewhere: the model sources of ``[models.<id>] arch = "<source>:<name>"``.

- ``torchvision:<name>``: any torchvision classification model (``torchvision.models.list_models``);
- ``timm:<name>``: any timm model (``timm.list_models()``);
- ``torchscript:<path>``: a TorchScript archive (``torch.jit.save``);
- ``python:<module>:<function>``: a factory of your own returning an ``nn.Module`` (it gets
  ``num_classes`` when its signature has that argument); the module is imported from the current
  folder or ``sys.path``;
- ``given``: a model passed to ``xaibench.evaluate`` from Python (:mod:`xaibench.api`).

A loaded model is evaluated, never trained and never modified. ``weights`` loads a state_dict
(``torch.save(model.state_dict())``, torchvision's own weight files, or ``.safetensors``) into the
built network; ``mean``/``std`` (ImageNet's by default) are put in front of it by the pixel-space
wrapper (:class:`xaibench.models.classifier.Classifier`), so layer names start with ``net.``. At config time,
before any data is read, the network is built once and run on one blank image of the dataset's
size: state_dict keys that do not match, a head whose class count differs from the dataset's, and
a network that cannot take the images are errors. Its model cell record holds the checksum of the
weights or TorchScript file and, for a factory, the code identity of its module
(:func:`xaibench.keys.code_identity`), so a changed file or factory recomputes every cell below.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from xaibench import keys
from xaibench.datasets.splits import Splits
from xaibench.errors import ParamError, RunError
from xaibench.io import load_checked, save_checked
from xaibench.models.families import arch_family
from xaibench.models.normalisation import IMAGENET_MEAN, IMAGENET_STD
from xaibench.models.training import TrainedModel, loss_and_accuracy
from xaibench.params import check_range
from xaibench.registry import DATASETS

if TYPE_CHECKING:
    from xaibench.models.classifier import Classifier


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state_dict from ``path``: ``.safetensors``, or a ``torch.save`` file (a plain state_dict,
    or one under "state_dict" / "model"; DataParallel's "module." prefixes are dropped)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ParamError("weights", f"{path} is not a readable state_dict file: "
                                    f"{str(exc).splitlines()[0]}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ParamError("weights", f"{path} holds no state_dict (a dict of tensors, as saved by "
                                    f"torch.save(model.state_dict()))")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def head_mismatch(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """(key, classes in the file, classes of the network) when the only shape differences are
    the first dimension of tensors that agree on it (the classifier head); else None."""
    own = net.state_dict()
    differ = [k for k in state if k in own and state[k].shape != own[k].shape]
    if not differ:
        return None
    file_dims = {state[k].shape[0] for k in differ if state[k].dim()}
    own_dims = {own[k].shape[0] for k in differ if own[k].dim()}
    same_rest = all(state[k].shape[1:] == own[k].shape[1:] for k in differ)
    if len(file_dims) == 1 and len(own_dims) == 1 and same_rest:
        return differ[0], file_dims.pop(), own_dims.pop()
    return None


def load_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], path: str,
                 num_classes: int | None, dataset: str) -> None:
    """Load ``state``, the state_dict read from ``path``, into ``net`` (exact keys and shapes), in place.

    Raises:
        ParamError: naming the first missing and the first unexpected key, the head's class count
            against the dataset's, or the first tensor of another shape.
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = [f"{len(found)} {what} key(s), the first {found[0]!r}"
                 for what, found in (("missing", missing), ("unexpected", unexpected)) if found]
        raise ParamError("weights", f"{path} does not match the network's state_dict: "
                                    f"{'; '.join(parts)}")
    head = head_mismatch(net, state)
    if head is not None and num_classes is not None:
        raise ParamError("weights", f"the model's head has {head[1]} classes ({head[0]} in {path}), "
                                    f"but dataset {dataset!r} has {num_classes} classes")
    wrong = [k for k in state if state[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise ParamError("weights", f"{path}: {k} has shape {list(state[k].shape)}, the network's "
                                    f"{list(own[k].shape)}")
    net.load_state_dict(state)


def outputs(model: torch.nn.Module, image_size: tuple[int, int]) -> int:
    """The class count of ``model``: the width of its logits for one blank image (no grad)."""
    try:
        with torch.no_grad():
            logits = model(torch.zeros(1, 3, *image_size))
    except Exception as exc:
        raise ParamError("arch", f"the model fails on a 1x3x{image_size[0]}x{image_size[1]} input "
                                 f"(the dataset's image size): {str(exc).splitlines()[0]}") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ParamError("arch", f"the model must return logits [B, classes], got "
                                 f"{getattr(logits, 'shape', type(logits).__name__)}")
    return logits.shape[1]


@dataclass(frozen=True, kw_only=True)
class EvaluatedModel:
    """What every model trained elsewhere shares: it is built, checked and evaluated, never trained.

    Attributes:
        id: the model's name in the leaderboard.
        arch: "<source>:<name>".
        batch_size: images per batch when computing the test accuracy.
    """

    id: str
    arch: str
    batch_size: int = 32

    source: ClassVar[str] = ""
    requires_masks: ClassVar[bool] = False
    checkpoint: ClassVar[None] = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, low=1)
        if not self.arch.startswith(f"{self.source}:") or not self.name:
            raise ParamError("arch", f"expected '{self.source}:<name>', got {self.arch!r}")

    @property
    def name(self) -> str:
        return self.arch.split(":", 1)[1]

    def classifier(self, num_classes: int | None, dataset: str) -> Classifier:
        """The pixel-space model, built fresh (random parts drawn from torch's global RNG)."""
        raise NotImplementedError

    def content_identity(self) -> dict[str, Any]:
        """What the model cell's record holds beside the settings: file checksums, code."""
        return {}

    @property
    def family(self) -> str | None:
        """"cnn" or "vit": from the name when it tells, else from the built network."""
        return arch_family(self.arch) or _probe_family(self)

    def check_image_size(self, height: int, width: int) -> None:
        """Nothing to check before the dataset is known (:meth:`check_dataset` runs the model)."""

    def check_checkpoint(self, image_size: tuple[int, int]) -> None:
        """No xaibench checkpoint: weights come through the source."""

    def check_dataset(self, dataset: Any) -> None:
        """Config time: build the model for ``dataset`` and run one blank image through it.

        Raises:
            ParamError: state_dict keys that do not match, a head of another class count than
                the dataset's (naming both), a network that fails on the dataset's image size.
        """
        name = next(iter(DATASETS.names_for(type(dataset))), "?")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self.classifier(dataset.num_classes, name).eval()
        check_classes(model, dataset.num_classes, dataset.image_size, name)

    def obtain(self, splits: Splits, *, path: Path, device: torch.device, seed: int,
               **_: Any) -> TrainedModel:
        """The model for ``splits`` in eval mode on ``device`` and its test accuracy (cached at
        ``path``, the model cell's file, with nothing else: the model is rebuilt each run)."""
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                model = self.classifier(splits.num_classes, "the run's").eval()
            check_classes(model, splits.num_classes, splits.image_size, "the run's")
        except ParamError as exc:
            raise RunError(f"[models.{self.id}] {exc}") from None
        model = model.to(device)
        cached = load_checked(path)
        if cached is not None:
            return TrainedModel(model, [], cached["test_accuracy"], computed=False)
        accuracy = loss_and_accuracy(model, splits.test, self.batch_size, device)[1]
        save_checked(path, {"arch": self.arch, "test_accuracy": accuracy})
        return TrainedModel(model, [], accuracy, computed=True)


def check_classes(model: torch.nn.Module, num_classes: int | None, image_size: tuple[int, int],
                  dataset: str) -> None:
    """Raise ParamError when ``model``'s logits are not as wide as the dataset's class count."""
    found = outputs(model, image_size)
    if num_classes is not None and found != num_classes:
        raise ParamError("arch", f"the model's head has {found} classes, but dataset {dataset!r} has "
                                 f"{num_classes} classes")


@functools.lru_cache(maxsize=4)
def _probe_family(cfg: EvaluatedModel) -> str:
    from xaibench.methods.layers import model_family

    with torch.random.fork_rng(devices=[]):
        return model_family(cfg.classifier(None, "?"))


@dataclass(frozen=True, kw_only=True)
class LoadedModel(EvaluatedModel):
    """A model read from a source, with optional weights and its input normalisation.

    Attributes:
        weights: a state_dict file loaded into the built network (``torch.save(model.state_dict())``,
            torchvision's own weight file, or ``.safetensors``); keys and shapes must match.
        mean, std: per-channel normalisation the network expects (ImageNet's by default); xaibench
            puts it in front, so the model takes images in [0, 1].
    """

    weights: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ParamError("std" if len(self.mean) == 3 else "mean",
                             f"mean and std need 3 values (std > 0), got {list(self.mean)} and "
                             f"{list(self.std)}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ParamError("weights", f"file {self.weights} not found")
        self.check_name()

    def check_name(self) -> None:
        """Raise ParamError when the source has no model of this name (listing the known ones)."""

    def network(self, num_classes: int | None) -> torch.nn.Module:
        """The network as the source builds it (``num_classes`` None: the source's default)."""
        raise NotImplementedError

    def classifier(self, num_classes: int | None, dataset: str) -> Classifier:
        from xaibench.models.classifier import Classifier

        net = self.network(num_classes)
        if self.weights is not None:
            state = read_state_dict(self.weights)
            if num_classes is None:  # the dataset counts its classes when read: the file's head decides
                head = head_mismatch(net, state)
                net = net if head is None else self.network(head[1])
            load_weights(net, state, self.weights, num_classes, dataset)
        return Classifier(net, cam_layer=None, mean=self.mean, std=self.std)  # type: ignore[arg-type]

    def content_identity(self) -> dict[str, Any]:
        return {"weights": {"sha256": keys.file_digest(self.weights)}} if self.weights else {}


def unknown_name(source: str, name: str, known: list[str], listed: int = 200) -> ParamError:
    close = difflib.get_close_matches(name, known, n=8, cutoff=0.5)
    shown = (", ".join(known) if len(known) <= listed
             else f"{len(known)} names, the closest: {', '.join(close)}")
    return ParamError("arch", f"{source} has no model {name!r}; known models: {shown}")


@dataclass(frozen=True, kw_only=True)
class TorchvisionModel(LoadedModel):
    """Any torchvision classification model: arch = "torchvision:<name>" (e.g. resnet50, vit_b_16)."""

    source: ClassVar[str] = "torchvision"

    def check_name(self) -> None:
        import torchvision.models as tvm

        known = tvm.list_models(module=tvm)
        if self.name not in known:
            raise unknown_name("torchvision", self.name, known)

    def network(self, num_classes: int | None) -> torch.nn.Module:
        import torchvision.models as tvm

        extra = {} if num_classes is None else {"num_classes": num_classes}
        return tvm.get_model(self.name, weights=None, **extra)


@dataclass(frozen=True, kw_only=True)
class TimmModel(LoadedModel):
    """Any timm model: arch = "timm:<name>" (e.g. deit_small_patch16_224), weights never downloaded."""

    source: ClassVar[str] = "timm"

    def check_name(self) -> None:
        import timm

        if not timm.is_model(self.name):
            raise unknown_name("timm", self.name, timm.list_models(), listed=0)

    def network(self, num_classes: int | None) -> torch.nn.Module:
        import timm

        extra = {} if num_classes is None else {"num_classes": num_classes}
        return timm.create_model(self.name, pretrained=False, **extra)


@dataclass(frozen=True, kw_only=True)
class TorchScriptModel(LoadedModel):
    """A TorchScript archive: arch = "torchscript:<path>" (saved with torch.jit.save)."""

    source: ClassVar[str] = "torchscript"

    def check_name(self) -> None:
        if not Path(self.name).is_file():
            raise ParamError("arch", f"TorchScript file {self.name} not found")

    def network(self, num_classes: int | None) -> torch.nn.Module:
        try:
            return torch.jit.load(self.name, map_location="cpu")
        except Exception as exc:
            raise ParamError("arch", f"{self.name} is not a TorchScript archive: "
                                     f"{str(exc).splitlines()[0]}") from None

    def content_identity(self) -> dict[str, Any]:
        return {**super().content_identity(), "file": {"sha256": keys.file_digest(self.name)}}


@dataclass(frozen=True, kw_only=True)
class PythonModel(LoadedModel):
    """Your own factory: arch = "python:<module>:<function>", returning an nn.Module."""

    source: ClassVar[str] = "python"

    @property
    def target(self) -> tuple[str, str]:
        module, _, function = self.name.rpartition(":")
        return module, function

    def factory(self) -> Any:
        module, function = self.target
        if not module or not function:
            raise ParamError("arch", f"expected 'python:<module>:<function>', got {self.arch!r}")
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.append(str(Path.cwd()))  # modules beside the config, as `python -m` finds them
        try:
            found = getattr(importlib.import_module(module), function, None)
        except Exception as exc:
            raise ParamError("arch", f"cannot import module {module!r}: {exc}") from None
        if not callable(found):
            raise ParamError("arch", f"module {module!r} has no function {function!r}")
        return found

    def check_name(self) -> None:
        self.factory()

    def network(self, num_classes: int | None) -> torch.nn.Module:
        make = self.factory()
        takes = "num_classes" in inspect.signature(make).parameters
        net = make(num_classes=num_classes) if takes and num_classes is not None else make()
        if not isinstance(net, torch.nn.Module):
            raise ParamError("arch", f"{self.arch} returned {type(net).__name__}, not an nn.Module")
        return net

    def content_identity(self) -> dict[str, Any]:
        return {**super().content_identity(), "factory": keys.code_identity(self.target[0])}


@dataclass(frozen=True, kw_only=True)
class GivenModel(EvaluatedModel):
    """A model passed to xaibench.evaluate from Python: arch = "given:<class name>".

    Attributes:
        key: a hash of the model's state_dict (normalisation included), its class and the source
            of the class's module (:func:`xaibench.api.model_key`): a changed weight is a new key.
    """

    key: str
    source: ClassVar[str] = "given"

    @classmethod
    def holding(cls, model: Classifier, *, id: str, key: str) -> GivenModel:
        """The config of ``model`` (already wrapped, a private copy), named ``id``."""
        cfg = cls(id=id, arch=f"{cls.source}:{type(model.net).__name__}", key=key)
        object.__setattr__(cfg, "module", model)  # not a field: not part of the record
        return cfg

    def check_dataset(self, dataset: Any) -> None:
        if getattr(self, "module", None) is None:
            raise ParamError("arch", "'given' models come from xaibench.evaluate in Python; a config "
                                     "file cannot use them")
        super().check_dataset(dataset)

    def classifier(self, num_classes: int | None, dataset: str) -> Classifier:
        import copy

        return copy.deepcopy(self.module)
