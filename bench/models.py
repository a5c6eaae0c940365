"""Models: torchvision backbones behind a pixel-space wrapper, their training and checkpoint cache.

Every model takes images in [0, 1] ([B,3,H,W]) and returns logits; ImageNet normalisation is
its first layer (:class:`xaibench.classifier.Classifier`, also importable from here), so
perturbation substrates mean the same for every model.

The trainable architectures are the names registered for :class:`ModelConfig` in the entry-point
group ``xaibench.models`` (pyproject.toml: resnet18, resnet50, vgg16); any torchvision ResNet or
VGG can be added there. Nothing here imports torch at module level: a config is checked before
torch is imported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm.auto import tqdm

from xaibench.datasets.splits import Split, Splits
from xaibench.io import load_checked, save_checked
from xaibench.plugins import ConfigError, ParamError, check_choice, check_range
from xaibench.registry import MODELS

if TYPE_CHECKING:
    from collections.abc import Callable

    from xaibench.classifier import Classifier


def __getattr__(name: str) -> Any:
    if name == "Classifier":  # `from xaibench.models import Classifier`: imports torch, on first use
        from xaibench.classifier import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- architectures --------------------------------------------------------------------------------


def backbone_network(arch: str, num_classes: int, small_stem: bool, weights: dict | None) -> Classifier:
    """torchvision's ``arch`` (a ResNet or a VGG) with a ``num_classes`` head, in the pixel-space
    wrapper. ``small_stem`` drops the stem's max-pool (ResNet) or the last pool (VGG), so small
    images keep a usable final feature map; ``weights`` (ImageNet's) are loaded before the head
    is replaced. Grad-CAM's default layer: the last residual stage, or VGG's last ReLU."""
    import torchvision.models as tvm

    from xaibench.classifier import Classifier

    net = tvm.get_model(arch, weights=None)
    if weights is not None:
        net.load_state_dict(weights)
    if isinstance(net, tvm.ResNet):
        net.fc = torch.nn.Linear(net.fc.in_features, num_classes)
        if small_stem:
            net.maxpool = torch.nn.Identity()
        return Classifier(net, cam_layer="net.layer4")
    if isinstance(net, tvm.VGG):
        net.classifier[-1] = torch.nn.Linear(net.classifier[-1].in_features, num_classes)
        if small_stem:
            net.features[-1] = torch.nn.Identity()
        return Classifier(net, cam_layer=f"net.features.{len(net.features) - 2}")
    raise ValueError(f"{arch} is neither a torchvision ResNet nor a VGG: xaibench cannot train it "
                     f"(evaluate it as arch = 'torchvision:{arch}' instead)")


def pretrained_weights(arch: str, weights_path: str | None) -> dict:
    """torchvision's ImageNet weights for ``arch``, read from disk only (never downloaded).

    Looks at ``weights_path`` when given, else at torchvision's cache file
    (``$TORCH_HOME/hub/checkpoints/<file>``).

    Raises:
        FileNotFoundError: with the expected path and how to get the file there.
    """
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    filename = weights.url.rsplit("/", 1)[-1]
    path = Path(weights_path) if weights_path else Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {arch} not found at {path}. xaibench never downloads at run "
            f"time: fetch {weights.url} on a machine with internet and copy it there (or set "
            f"weights_path), or set pretrained = false")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- configuration ------------------------------------------------------------------------------


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
        """The trained model for ``splits`` (see :func:`obtain_model`)."""
        return obtain_model(self, splits, path=path, context_key=context_key, device=device, seed=seed,
                            progress=progress)

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
        return train_classifier(model, splits, self, device=device, seed=seed, progress=progress)


def build_model(cfg: BackboneConfig, num_classes: int, image_size: tuple[int, int]) -> Classifier:
    """An untrained (or ImageNet-initialised) model for ``cfg``."""
    return cfg.build(num_classes, image_size)


# -- training ----------------------------------------------------------------------------------


def recalibrate_batchnorm(model: torch.nn.Module, forward: Callable[[torch.Tensor], object],
                          split: Split, *, batch_size: int, batches: int, device: torch.device,
                          generator: torch.Generator) -> None:
    """Precise BN: reset the running statistics of the BatchNorm layers of ``model`` that are in
    train mode, then set them to the average batch statistics of ``batches`` shuffled batches of
    ``split`` passed through ``forward`` (no gradients). Layers in eval mode stay unchanged."""
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    try:
        with torch.no_grad():
            for images, _, _ in islice(split.batches(batch_size, device=device, generator=generator),
                                       batches):
                forward(images)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def evaluate(model: torch.nn.Module, split: Split, batch_size: int,
             device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``, in eval mode (no gradients)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels, _ in split.batches(batch_size, device=device):
            logits = model(images)
            loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
    model.train(was_training)
    return loss / len(split), correct / len(split)


def train_classifier(
    model: torch.nn.Module,
    splits: Splits,
    cfg: ModelConfig,
    *,
    device: torch.device,
    seed: int,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` in place; keep the weights of the best validation loss.

    Returns the per-epoch history (train/val loss and accuracy).
    """
    opt = cfg.optimizer_for([{"params": [p for p in model.parameters() if p.requires_grad],
                              "lr": cfg.lr}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    gen = torch.Generator().manual_seed(seed)
    bn_gen = torch.Generator().manual_seed(seed + 1)
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    history = []
    bar = tqdm(range(cfg.epochs), desc=f"train {cfg.id}", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, correct, seen = 0.0, 0, 0
        for images, labels, _ in splits.train.batches(cfg.batch_size, device=device, generator=gen):
            logits = model(images)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        sched.step()
        if cfg.bn_recalibration:
            recalibrate_batchnorm(model, model, splits.train, batch_size=cfg.batch_size,
                                  batches=cfg.bn_recalibration, device=device, generator=bn_gen)
        val_loss, val_acc = evaluate(model, splits.val, cfg.batch_size, device)
        history.append({"epoch": epoch + 1, "train_loss": total / seen, "train_acc": correct / seen,
                        "val_loss": val_loss, "val_acc": val_acc})
        bar.set_postfix(val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}")
        if val_loss < best_loss:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return history


@dataclass(frozen=True)
class TrainedModel:
    """A model ready to explain, and what its cell knows about it.

    Attributes:
        model: in eval mode on the run's device.
        history: the per-epoch training history (empty for a loaded checkpoint).
        test_accuracy: on the run's test split.
        computed: False when read from the cache (or given as a checkpoint).
    """

    model: torch.nn.Module
    history: list[dict[str, float]]
    test_accuracy: float
    computed: bool


def obtain_model(
    cfg: BackboneConfig,
    splits: Splits,
    *,
    path: Path,
    context_key: str,
    device: torch.device,
    seed: int,
    progress: bool = True,
) -> TrainedModel:
    """The trained model for ``cfg``: a given checkpoint, the cached one at ``path``, or trained
    now and cached there.

    ``path`` is the model cell's cache file (its name carries the cell's key, see
    :mod:`xaibench.plan`); ``context_key`` (that key) also keys the intermediate caches of
    multi-stage trainers (the joint model's phases).
    """
    source = Path(cfg.checkpoint) if cfg.checkpoint else Path(path)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # model init and dropout: seeded, caller's RNG state restored
        model = build_model(cfg, splits.num_classes, splits.image_size).to(device)
        ckpt = load_checked(source)
        if ckpt is None and cfg.checkpoint:
            raise ConfigError(f"[models.{cfg.id}] checkpoint: {cfg.checkpoint} can no longer be "
                              f"read (changed since the config was checked?)")
        if ckpt is None:
            history = cfg.fit(model, splits, device=device, seed=seed, progress=progress,
                              cache_dir=Path(path).parent, data_key=context_key)
            _, test_acc = evaluate(model, splits.test, cfg.batch_size, device)
            ckpt = {"arch": cfg.arch, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "image_size": list(splits.image_size), "num_classes": splits.num_classes,
                    "history": history, "test_accuracy": test_acc}
            save_checked(path, ckpt)
            model.eval()
            return TrainedModel(model, history, test_acc, computed=True)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise ConfigError(f"[models.{cfg.id}] checkpoint: {source} does not fit this "
                              f"{cfg.arch} for {splits.num_classes} classes: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    accuracy = ckpt["test_accuracy"]
    if cfg.checkpoint:  # a model trained elsewhere: its accuracy on this test split
        accuracy = evaluate(model, splits.test, cfg.batch_size, device)[1]
    return TrainedModel(model, ckpt.get("history", []) if not cfg.checkpoint else [], accuracy,
                        computed=False)
