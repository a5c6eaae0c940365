"""Config and three-phase training of the xML joint explainer + classifier.

Phase 1 trains the classifier with the explainer frozen, phase 2 the explainer with the
classifier frozen, phase 3 both (Rio-Torto et al. 2020). Each phase has a fresh optimiser,
its own alpha, learning rates, epochs and early-stopping patience; the best-validation weights
of a phase are reloaded before the next. The frozen module has ``requires_grad`` off. As in the
original (icrto/xML, PyTorch/ExplainerClassifierCNN.py), the frozen classifier of phase 2 stays in
train mode by default (``frozen_bn = "train"``): its BatchNorm layers normalise with batch
statistics and their running statistics follow the changing map, while its weights stay fixed.
With ``frozen_bn = "eval"`` it uses the running statistics of phase 1, which no longer fit once
the map changes (the classifier collapsed to chance in phase 2, measured). With ``frozen_bn =
"learn"`` (not the original's) its BatchNorm layers also learn their scale and shift in phase 2,
at phase 2's ``lr_classifier``, so the classifier can follow a map that moves fast (a large
``gamma``; docs/joint.md). The frozen explainer of phase 1 is always in eval mode.

Each finished phase is cached under a key made of exactly the settings it depends on, so the
unsupervised and hybrid models share phase 1 when its alpha is 1 (the explanation loss then has
no weight), and changing phase-3 settings does not redo phases 1 and 2.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from tqdm.auto import tqdm

from xaibench.datasets.splits import Split, Splits
from xaibench.io import load_checked, save_checked
from xaibench.keys import digest
from xaibench.metrics.relevance_mass import relevance_mass
from xaibench.models.configs import BackboneConfig
from xaibench.models.training import recalibrate_batchnorm
from xaibench.plugins import ParamError, check_choice, check_range
from xaibench.registry import MODELS
from xaibench.seeding import derive_seed

from . import losses

if TYPE_CHECKING:  # the modules below subclass torch.nn.Module: imported where a model is built,
    # so that a config is checked before torch is imported
    from xaibench.models.classifier import Classifier

    from .model import JointClassifier

PHASES = ("classifier", "explainer", "joint")  # what each phase trains


def trains(phase: int) -> tuple[bool, bool]:
    """(classifier trains, explainer trains) in ``phase`` (0-based)."""
    return PHASES[phase] in ("classifier", "joint"), PHASES[phase] in ("explainer", "joint")
_PHASE_FIELDS = ("epochs", "alpha", "lr_classifier", "lr_explainer", "patience")


@dataclass(frozen=True, kw_only=True)
class JointModelConfig(BackboneConfig):
    """A joint explainer + classifier and its three-phase training (paper defaults).

    Attributes:
        arch: joint_resnet18, joint_resnet50, joint_vgg16 (torchvision backbones) or
            joint_xml_vgg (the original 4-stage VGG-like classifier).
        loss: "unsupervised" (sparsity + contiguity) or "hybrid" (+ the outside-the-mask term;
            needs a dataset with masks).
        beta: weight of sparsity against contiguity; gamma: weight of the hybrid term.
        init_bias: initial BatchNorm shift of the explainer head.
        epochs, alpha, lr_classifier, lr_explainer, patience: one value per phase (3 values).
            alpha weighs cross-entropy against the explanation loss. The learning rate of the
            module a phase freezes is ignored (except phase 2's lr_classifier with
            ``frozen_bn = "learn"``).
        class_weights: optional cross-entropy weight per class.
        augment: probability that a training image (and its mask) is randomly flipped and
            cropped (torchvision transforms v2); 0 disables augmentation.
        explainer_optimizer: the explainer's optimiser ("sgd" or "adam"); None uses
            ``optimizer`` like the classifier (the paper: SGD for both).
        bn_recalibration: (see BackboneConfig) the modules in train mode are those the phase
            trains, and the phase-2 classifier unless ``frozen_bn = "eval"``.
        frozen_bn: the mode of the frozen classifier in phase 2: "train" (the original's: batch
            statistics, running statistics updated, weights fixed), "eval" (running statistics
            of phase 1, nothing changes) or "learn" (as "train", and the BatchNorm layers' weight
            and bias train at phase 2's lr_classifier; every other weight stays fixed).
        upsample: the explainer decoder's up-sampling: "transpose" (the paper's stride-2
            transposed convolution) or "resize" (bilinear resize + 3x3 conv, no checkerboard).
        padding: the explainer's 3x3 convolutions pad the border with "zeros" (the paper's) or
            "reflect" (removes most of the frame that zero padding lets the maps grow along the
            image border; docs/joint.md).
        hybrid_images: the images that get the hybrid loss's outside-the-mask term: "all" (the
            paper's; on an empty mask it acts as a second L1) or "positives" (non-empty masks).
        explainer_width: the explainer's first-stage channels (the paper's 32; the stages have
            w, 2w and 4w). Its cost grows with the square: at 16 a training step of the explainer
            is about 3.4x cheaper (docs/joint.md).
    """

    arch: str = "joint_resnet18"
    loss: Literal["unsupervised", "hybrid"] = "unsupervised"
    beta: float = 0.9
    gamma: float = 1.0
    init_bias: float = 3.0
    epochs: tuple[int, ...] = (10, 10, 100)
    alpha: tuple[float, ...] = (1.0, 0.25, 0.9)
    lr_classifier: tuple[float, ...] = (0.01, 0.0, 0.01)
    lr_explainer: tuple[float, ...] = (0.0, 0.01, 0.01)
    patience: tuple[int, ...] = (100, 100, 10)
    class_weights: tuple[float, ...] | None = None
    augment: float = 0.0
    explainer_optimizer: Literal["sgd", "adam"] | None = None
    frozen_bn: Literal["train", "eval", "learn"] = "train"
    upsample: Literal["transpose", "resize"] = "transpose"
    padding: Literal["zeros", "reflect"] = "zeros"
    hybrid_images: Literal["all", "positives"] = "all"
    explainer_width: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("arch", self.arch, MODELS.names_for(type(self)))
        for key in _PHASE_FIELDS:
            if len(getattr(self, key)) != 3:
                raise ParamError(key, f"needs one value per phase (3 values), got {list(getattr(self, key))}")
        for phase in range(3):
            check_range("epochs", self.epochs[phase], low=0)
            check_range("alpha", self.alpha[phase], low=0.0, high=1.0)
            check_range("patience", self.patience[phase], low=1)
            check_range("lr_classifier", self.lr_classifier[phase], low=0.0)
            check_range("lr_explainer", self.lr_explainer[phase], low=0.0)
            if self.epochs[phase] == 0:
                continue
            for module, key, trained in zip(("classifier", "explainer"), ("lr_classifier", "lr_explainer"),
                                            trains(phase)):
                if trained and getattr(self, key)[phase] <= 0:
                    raise ParamError(key, f"phase {phase + 1} trains the {module}: its learning rate "
                                          f"must be > 0, got {getattr(self, key)[phase]}")
        if self.frozen_bn == "learn" and self.epochs[1] and self.lr_classifier[1] <= 0:
            raise ParamError("lr_classifier", f"frozen_bn = 'learn' trains the classifier's BatchNorm in "
                                              f"phase 2: its learning rate must be > 0, got "
                                              f"{self.lr_classifier[1]}")
        check_range("beta", self.beta, low=0.0, high=1.0)
        check_range("gamma", self.gamma, low=0.0)
        check_range("augment", self.augment, low=0.0, high=1.0)
        check_range("explainer_width", self.explainer_width, low=1)
        if self.class_weights is not None and any(w <= 0 for w in self.class_weights):
            raise ParamError("class_weights", f"must all be > 0, got {list(self.class_weights)}")

    @property
    def requires_masks(self) -> bool:
        return self.loss == "hybrid"

    def check_image_size(self, height: int, width: int) -> None:
        if height % 8 or width % 8:
            raise ParamError("arch", f"the joint explainer needs H and W divisible by 8, got "
                                     f"{height}x{width}; resize the dataset (e.g. image_size = "
                                     f"{max(8, height // 8 * 8)})")

    def build(self, num_classes: int, image_size: tuple[int, int]) -> JointClassifier:
        from .explainer import Explainer
        from .model import XMLVGG, JointClassifier, gate_points

        if self.arch == "joint_xml_vgg":
            net, cam_layer = XMLVGG(num_classes), "net.features.6"
        else:
            plain = self.backbone(self.arch.removeprefix("joint_"), num_classes, image_size)
            net, cam_layer = plain.net, plain.cam_layer
        return JointClassifier(net, Explainer(init_bias=self.init_bias, upsample=self.upsample,
                                                  padding=self.padding, width=self.explainer_width),
                               gates=gate_points(net),
                               cam_layer=cam_layer)

    def fit(self, model: Classifier, splits: Splits, *, device: torch.device, seed: int,
            progress: bool, cache_dir: Path | None = None, data_key: str = "") -> list[dict[str, float]]:
        return train_joint(model, splits, self, device=device, seed=seed, progress=progress,
                           cache_dir=cache_dir, data_key=data_key)

    def phase_key(self, phase: int, data_key: str, seed: int) -> str:
        """Hash of exactly the settings that determine the weights after ``phase`` (0-based)."""
        settings = asdict(self)
        for key in ("id", *_PHASE_FIELDS):
            settings.pop(key)
        settings["phases"] = [[getattr(self, k)[p] for k in _PHASE_FIELDS] for p in range(phase + 1)]
        if all(self.alpha[p] == 1.0 for p in range(phase + 1)):
            for key in ("loss", "beta", "gamma", "hybrid_images"):  # no weight on the explanation loss yet
                settings.pop(key)
        if phase == 0:
            settings.pop("frozen_bn")  # only phase 2 has a frozen classifier
        return digest({"kind": "joint-phase", "settings": settings, "upstream": data_key, "seed": seed})


# -- training --------------------------------------------------------------------------------------


def explanation_loss(z: torch.Tensor, masks: torch.Tensor | None, cfg: JointModelConfig) -> torch.Tensor:
    """The configured per-image explanation loss [B]."""
    if cfg.loss == "hybrid":
        if masks is None:
            raise ValueError("the hybrid loss needs ground-truth masks; the dataset has none")
        return losses.hybrid(z, masks, beta=cfg.beta, gamma=cfg.gamma, images=cfg.hybrid_images)
    return losses.unsupervised(z, beta=cfg.beta)


def augment_batch(images: torch.Tensor, masks: torch.Tensor | None,
                  p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """With probability ``p`` per image: a random horizontal flip and a mild random resized crop,
    applied identically to the image and its mask (torchvision transforms v2)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    size = list(images.shape[-2:])
    transform = v2.Compose([v2.RandomHorizontalFlip(),
                            v2.RandomResizedCrop(size, scale=(0.75, 1.0), ratio=(0.9, 1.1))])
    images = images.clone()
    masks = None if masks is None else masks.clone()
    for i in torch.nonzero(torch.rand(len(images)) < p).flatten().tolist():
        if masks is None:
            images[i] = transform(tv_tensors.Image(images[i]))
        else:
            img, m = transform(tv_tensors.Image(images[i]), tv_tensors.Mask(masks[i]))
            images[i], masks[i] = img, m
    return images, masks


def run_epoch(model: JointClassifier, split: Split, cfg: JointModelConfig, *, alpha: float,
              device: torch.device, optimizer: torch.optim.Optimizer | _Optimizers | None = None,
              generator: torch.Generator | None = None) -> dict[str, float]:
    """One pass over ``split``: a training epoch when an optimizer is given, else evaluation.

    Returns the mean total loss, CE, explanation loss and accuracy, and, when the split has
    masks, ``mass``: the mean share of the map inside the mask (relevance mass) over the images
    whose mask is not empty, so training curves show how well the maps localise.
    """
    weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, device=device)
    # Sums stay on the device (one host sync per epoch, not several per batch): loss, CE,
    # explanation loss, correct predictions, mass inside the masks, images with a mask.
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    with torch.set_grad_enabled(optimizer is not None):
        for images, labels, masks in split.batches(cfg.batch_size, device=device, generator=generator):
            if optimizer is not None and cfg.augment > 0:
                images, masks = augment_batch(images, masks, cfg.augment)
            logits, z = model.forward_with_explanation(images)
            expl = explanation_loss(z, masks, cfg)
            loss, ce, expl_mean = losses.total(logits, labels, expl, alpha=alpha, class_weights=weights)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            n = len(labels)
            correct = (logits.argmax(1) == labels).sum()
            batch = [t.detach().double() * n for t in (loss, ce, expl_mean)] + [correct]
            if masks is not None:
                share = relevance_mass(z.detach()[:, 0], masks, positive_only=False)
                batch += [share.nansum(), (~share.isnan()).sum()]
            sums[:len(batch)] += torch.stack([b.to(sums.dtype) for b in batch])
    *totals, mass, masked = sums.tolist()
    means = {k: v / len(split) for k, v in zip(("loss", "ce", "expl", "acc"), totals)}
    return means if split.masks is None else {**means, "mass": mass / masked if masked else math.nan}


def recalibrate_phase(model: JointClassifier, split: Split, cfg: JointModelConfig, phase: int, *,
                      device: torch.device, generator: torch.Generator) -> None:
    """Precise BN for ``phase``: the BatchNorm layers :func:`set_phase` leaves in train mode get the
    statistics of ``cfg.bn_recalibration`` training batches; a frozen module in eval mode stays
    unchanged. Leaves the model as :func:`set_phase` does."""
    set_phase(model, phase, frozen_bn=cfg.frozen_bn)
    recalibrate_batchnorm(model, model.forward_with_explanation, split, batch_size=cfg.batch_size,
                          batches=cfg.bn_recalibration, device=device, generator=generator)


def set_phase(model: JointClassifier, phase: int, *,
              frozen_bn: Literal["train", "eval", "learn"] = "train") -> None:
    """Train mode and requires_grad for the phase (0-based). The frozen module has requires_grad
    off; the frozen explainer (phase 1) is in eval mode, the frozen classifier (phase 2) in
    ``frozen_bn`` mode ("train": BatchNorm on batch statistics, as the original; "learn": also
    the BatchNorm weights and biases train)."""
    model.train()
    for module, trained in zip((model.net, model.explainer), trains(phase)):
        module.train(trained or (module is model.net and frozen_bn != "eval"))
        module.requires_grad_(trained)
    if batchnorm_learns(frozen_bn, phase):
        for p in batchnorm_parameters(model.net):
            p.requires_grad_(True)


def batchnorm_learns(frozen_bn: str, phase: int) -> bool:
    """Whether the frozen classifier's BatchNorm weights and biases train in ``phase`` (0-based)."""
    return frozen_bn == "learn" and PHASES[phase] == "explainer"


def batchnorm_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights and biases of the BatchNorm layers in ``module``."""
    return [p for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for p in m.parameters()]


def train_joint(
    model: JointClassifier,
    splits: Splits,
    cfg: JointModelConfig,
    *,
    device: torch.device,
    seed: int,
    progress: bool = True,
    cache_dir: Path | None = None,
    data_key: str = "",
) -> list[dict[str, float]]:
    """Three-phase training in place; returns the per-epoch history of every phase."""
    history: list[dict[str, float]] = []
    for phase in range(3):
        key = cfg.phase_key(phase, data_key, seed)
        path = None if cache_dir is None else Path(cache_dir) / "joint-phases" / f"{key}.pt"
        cached = None if path is None else load_checked(path)
        if cached is not None:
            model.load_state_dict(cached["state_dict"])
            history = cached["history"]
            continue
        history += train_phase(model, splits, cfg, phase, device=device, seed=seed, progress=progress)
        if path is not None:
            save_checked(path, {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                                "history": history})
    model.requires_grad_(True)
    model.eval()
    return history


class _Optimizers:
    """Several optimisers stepped as one (the classifier's and the explainer's)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


def phase_optimizer(model: JointClassifier, cfg: JointModelConfig, phase: int) -> _Optimizers:
    """Fresh optimisers for the modules ``phase`` trains, at the phase's learning rates: the
    classifier's ``cfg.optimizer``, the explainer's ``cfg.explainer_optimizer`` (or the same)."""
    kinds = (cfg.optimizer, cfg.explainer_optimizer or cfg.optimizer)
    lrs = (cfg.lr_classifier[phase], cfg.lr_explainer[phase])
    by_kind: dict[str, list[dict]] = {}
    for module, kind, lr, trained in zip((model.net, model.explainer), kinds, lrs, trains(phase)):
        if trained:
            by_kind.setdefault(kind, []).append({"params": list(module.parameters()), "lr": lr})
    if batchnorm_learns(cfg.frozen_bn, phase):  # the frozen classifier's BatchNorm
        by_kind.setdefault(kinds[0], []).append({"params": batchnorm_parameters(model.net), "lr": lrs[0]})
    return _Optimizers([replace(cfg, optimizer=kind).optimizer_for(groups)
                        for kind, groups in by_kind.items()])


def train_phase(model: JointClassifier, splits: Splits, cfg: JointModelConfig, phase: int, *,
                device: torch.device, seed: int, progress: bool) -> list[dict[str, float]]:
    """Train one phase; the weights of its best validation loss are left in ``model``."""
    epochs, alpha, patience = cfg.epochs[phase], cfg.alpha[phase], cfg.patience[phase]
    if epochs == 0:
        return []
    # Each phase starts from its own seeded state, so a phase resumed from the cache continues
    # exactly as an uninterrupted run would (global RNG: augmentation, dropout).
    torch.manual_seed(derive_seed("phase-seed", seed, phase, digits=8))
    generator = torch.Generator().manual_seed(derive_seed("phase-order", seed, phase, digits=8))
    set_phase(model, phase, frozen_bn=cfg.frozen_bn)
    optimizer = phase_optimizer(model, cfg, phase)
    bn_generator = torch.Generator().manual_seed(derive_seed("phase-bn", seed, phase, digits=8))
    best, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    rows = []
    bar = tqdm(range(epochs), desc=f"train {cfg.id} phase {phase + 1}", disable=not progress, leave=False)
    for epoch in bar:
        set_phase(model, phase, frozen_bn=cfg.frozen_bn)
        train = run_epoch(model, splits.train, cfg, alpha=alpha, device=device, optimizer=optimizer,
                          generator=generator)
        if cfg.bn_recalibration:
            recalibrate_phase(model, splits.train, cfg, phase, device=device, generator=bn_generator)
        model.eval()
        val = run_epoch(model, splits.val, cfg, alpha=alpha, device=device)
        rows.append({"phase": phase + 1, "epoch": epoch + 1,
                     **{f"train_{k}": v for k, v in train.items()},
                     **{f"val_{k}": v for k, v in val.items()}})
        bar.set_postfix(val_loss=f"{val['loss']:.3f}", val_acc=f"{val['acc']:.3f}")
        if val["loss"] < best:
            best, best_state, stale = val["loss"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    return rows
