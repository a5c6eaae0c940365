"""Model configs: the ``[models.<id>]`` tables of the trainable architectures as frozen dataclasses.

Every model takes images in [0, 1] ([B,3,H,W]) and returns logits; ImageNet normalisation is
its first layer (:class:`xaibench.models.classifier.Classifier`), so perturbation substrates
mean the same for every model. The trainable architectures are the names registered for
:class:`ModelConfig` in the entry-point group ``xaibench.models`` (pyproject.toml: resnet18,
resnet50, vgg16); any torchvision ResNet or VGG can be added there. A config checks its values
when built (config time, no torch work); building the network and training are
:mod:`xaibench.models.backbones` and :mod:`xaibench.models.training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from xaibench.errors import ParamError
from xaibench.io import load_checked
from xaibench.models.families import arch_family
from xaibench.params import check_choice, check_range
from xaibench.registry import MODELS

if TYPE_CHECKING:
    from xaibench.datasets.splits import Splits
    from xaibench.models.classifier import Classifier
    from xaibench.models.training import TrainedModel



@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """What every model config shares: the backbone and the optimiser.

    Attributes:
        id: the model's name in the leaderboard (the TOML table name).
        arch: the architecture.
        pretrained: start from torchvision's ImageNet weights (read from disk, never downloaded).
        weights_path: where those weights are, when not in torchvision's cache.
        checkpoint: a trained xaibench checkpoint to evaluate instead of training (a file from
            results/<dataset>/cache/models/, or one saved the same way); checked at config time
            against this model's architecture and the dataset's image size.
        stem: "auto" drops the stem's max-pool (ResNet) or the last pool (VGG) for images
            smaller than 112 px, so small images keep a usable final feature map.
        batch_size, weight_decay, momentum, optimizer: training.
        bn_recalibration: before each validation, recompute the BatchNorm running statistics of
            the modules in train mode from this many shuffled training batches (forward passes,
            no gradients; "precise BN", Wu and Johnson 2021), so that validation and early
            stopping judge the current weights rather than running averages that lag them;
            0 keeps the running averages (torchvision's and the xML paper's training).
    """

    id: str
    arch: str
    pretrained: bool = False
    weights_path: str | None = None
    checkpoint: str | None = None
    stem: Literal["auto", "imagenet", "small"] = "auto"
    batch_size: int = 32
    weight_decay: float = 1e-4
    momentum: float = 0.9
    optimizer: Literal["sgd", "adam"] = "sgd"
    bn_recalibration: int = 0

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, low=1)
        check_range("bn_recalibration", self.bn_recalibration, low=0)
        check_range("weight_decay", self.weight_decay, low=0.0)
        check_range("momentum", self.momentum, low=0.0, high=1.0)

    def check_checkpoint(self, image_size: tuple[int, int]) -> None:
        """Raise ParamError unless ``checkpoint`` is a readable xaibench checkpoint of this
        architecture, trained on images of ``image_size`` (a config-time check: reads the file)."""
        if self.checkpoint is None:
            return
        ckpt = load_checked(Path(self.checkpoint))
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
            raise ParamError("checkpoint", f"{self.checkpoint} is missing, corrupt or not an "
                             f"xaibench checkpoint (one written by `xaibench run` under "
                             f"results/<dataset>/cache/models/)")
        if ckpt["arch"] != self.arch:
            raise ParamError("checkpoint", f"{self.checkpoint} holds a {ckpt['arch']} model, but "
                             f"arch = {self.arch!r}; set arch = {ckpt['arch']!r} or choose a "
                             f"{self.arch} checkpoint")
        trained = tuple(ckpt.get("image_size", image_size))
        if trained != tuple(image_size):
            raise ParamError("checkpoint", f"{self.checkpoint} was trained on {trained[0]}x"
                             f"{trained[1]} images, but the dataset yields {image_size[0]}x"
                             f"{image_size[1]}; use the matching image_size")

    def small_stem(self, image_size: tuple[int, int]) -> bool:
        return self.stem == "small" or (self.stem == "auto" and min(image_size) < 112)

    def backbone(self, arch: str, num_classes: int, image_size: tuple[int, int]) -> Classifier:
        """The torchvision backbone ``arch`` in the pixel-space wrapper."""
        from xaibench.models.backbones import backbone_network, pretrained_weights

        weights = pretrained_weights(arch, self.weights_path) if self.pretrained else None
        return backbone_network(arch, num_classes, self.small_stem(image_size), weights)

    def optimizer_for(self, groups: list[dict]) -> torch.optim.Optimizer:
        """A fresh optimiser over parameter groups (each with its own ``lr``)."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(groups, weight_decay=self.weight_decay)

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ParamError when this model cannot take images of this size."""

    def check_dataset(self, dataset: object) -> None:
        """Config-time checks against the dataset plugin (none: the model is built for it)."""

    def build(self, num_classes: int, image_size: tuple[int, int]) -> Classifier:
        raise NotImplementedError

    def obtain(self, splits: Splits, *, path: Path, context_key: str, device: torch.device, seed: int,
               progress: bool) -> TrainedModel:
        """The trained model for ``splits`` (see :func:`xaibench.models.training.obtain_model`)."""
        from xaibench.models.training import obtain_model

        return obtain_model(self, splits, path=path, context_key=context_key, device=device, seed=seed,
                            progress=progress)

    @property
    def family(self) -> str | None:
        """The model family its architecture name tells ("cnn", "vit"; None: unknown)."""
        return arch_family(self.arch)

    @property
    def requires_masks(self) -> bool:
        """Whether training needs ground-truth masks."""
        return False

    def fit(self, model: Classifier, splits: Splits, *, device: torch.device, seed: int,
            progress: bool, cache_dir: Path | None = None, data_key: str = "") -> list[dict[str, float]]:
        """Train ``model`` in place; return the per-epoch history. ``cache_dir`` and ``data_key``
        let a trainer cache intermediate stages."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class ModelConfig(BackboneConfig):
    """A plain torchvision classifier trained with cross-entropy.

    Attributes:
        arch: a name registered for this class (``xaibench list models``: resnet18, resnet50, vgg16).
        epochs, lr: training length and learning rate (cosine schedule).
        patience: early stopping on validation loss (epochs without improvement).
    """

    arch: str = "resnet18"
    epochs: int = 10
    lr: float = 0.01
    patience: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("arch", self.arch, MODELS.names_for(type(self)))
        check_range("epochs", self.epochs, low=0)
        check_range("patience", self.patience, low=1)
        if not self.lr > 0:
            raise ParamError("lr", f"must be > 0, got {self.lr}")

    def build(self, num_classes: int, image_size: tuple[int, int]) -> Classifier:
        return self.backbone(self.arch, num_classes, image_size)

    def fit(self, model: Classifier, splits: Splits, *, device: torch.device, seed: int,
            progress: bool, cache_dir: Path | None = None, data_key: str = "") -> list[dict[str, float]]:
        from xaibench.models.training import train_classifier

        return train_classifier(model, splits, self, device=device, seed=seed, progress=progress)


def build_model(cfg: BackboneConfig, num_classes: int, image_size: tuple[int, int]) -> Classifier:
    """An untrained (or ImageNet-initialised) model for ``cfg``."""
    return cfg.build(num_classes, image_size)
