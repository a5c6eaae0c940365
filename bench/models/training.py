"""Training a classifier (cross-entropy, cosine schedule, early stopping on the validation loss) and
the checkpoint cache of trained models (:func:`obtain_model`)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from xaibench.datasets.splits import Split, Splits
from xaibench.errors import RunError
from xaibench.io import load_checked, save_checked

if TYPE_CHECKING:
    from collections.abc import Callable




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


def loss_and_accuracy(model: torch.nn.Module, split: Split, batch_size: int,
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
    cfg: Any,  # xaibench.models.configs.ModelConfig
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
        val_loss, val_acc = loss_and_accuracy(model, splits.val, cfg.batch_size, device)
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
    cfg: Any,  # xaibench.models.configs.BackboneConfig
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
    :mod:`xaibench.run.plan`); ``context_key`` (that key) also keys the intermediate caches of
    multi-stage trainers (the joint model's phases).
    """
    source = Path(cfg.checkpoint) if cfg.checkpoint else Path(path)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # model init and dropout: seeded, caller's RNG state restored
        model = cfg.build(splits.num_classes, splits.image_size).to(device)
        ckpt = load_checked(source)
        if ckpt is None and cfg.checkpoint:
            raise RunError(f"[models.{cfg.id}] checkpoint: {cfg.checkpoint} can no longer be "
                              f"read (changed since the config was checked?)")
        if ckpt is None:
            history = cfg.fit(model, splits, device=device, seed=seed, progress=progress,
                              cache_dir=Path(path).parent, data_key=context_key)
            _, test_acc = loss_and_accuracy(model, splits.test, cfg.batch_size, device)
            ckpt = {"arch": cfg.arch, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "image_size": list(splits.image_size), "num_classes": splits.num_classes,
                    "history": history, "test_accuracy": test_acc}
            save_checked(path, ckpt)
            model.eval()
            return TrainedModel(model, history, test_acc, computed=True)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise RunError(f"[models.{cfg.id}] checkpoint: {source} does not fit this "
                              f"{cfg.arch} for {splits.num_classes} classes: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    accuracy = ckpt["test_accuracy"]
    if cfg.checkpoint:  # a model trained elsewhere: its accuracy on this test split
        accuracy = loss_and_accuracy(model, splits.test, cfg.batch_size, device)[1]
    return TrainedModel(model, ckpt.get("history", []) if not cfg.checkpoint else [], accuracy,
                        computed=False)
