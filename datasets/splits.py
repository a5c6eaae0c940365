"""In-memory image splits: the batch format every stage shares.

A batch is ``(images [B,3,H,W] float32 in [0,1], labels [B] long, masks [B,H,W] bool or None)``.
Images are stored as uint8 to keep memory small and converted per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

Batch = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor | None"]  # strings: torch stays deferred


@dataclass(frozen=True)
class Split:
    """One split held in memory.

    Attributes:
        images: uint8 [N, 3, H, W] (0-255), or float32 [N, 3, H, W] in [0, 1] as given (data
            handed to ``xaibench.evaluate`` is kept exactly, not rounded to 8 bits).
        labels: int64 [N].
        masks: bool [N, H, W] (ground-truth regions), or None when the dataset has none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if (self.images.dtype not in (torch.uint8, torch.float32) or self.images.dim() != 4
                or self.images.shape[1] != 3):
            raise ValueError(f"images must be uint8 or float32 [N,3,H,W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must be [N={n}], got {tuple(self.labels.shape)}")
        if self.masks is not None and self.masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"masks must be [N,H,W]={(n, *self.images.shape[2:])}, "
                             f"got {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor | slice, device: torch.device | str = "cpu") -> Batch:
        """The batch at ``index`` (a slice or an index tensor) on ``device``."""
        if self.images.dtype == torch.uint8:
            images = self.images[index].to(device).float().div_(255.0)
        else:
            images = self.images[index].to(device, copy=True)
        labels = self.labels[index].to(device)
        masks = None if self.masks is None else self.masks[index].to(device)
        return images, labels, masks

    def batches(
        self,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Batches in order, or shuffled when a ``generator`` is given."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield self.batch(index, device)


@dataclass(frozen=True)
class Splits:
    """The three splits and their metadata.

    Attributes:
        fingerprint: a hash of the data on disk the splits were read from (files, sizes,
            modification times, parameters), or "" for generated data; it keys the caches of
            models and attributions, so changed files are never scored with stale models.
    """

    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.test.images.shape[2:])  # type: ignore[return-value]

    @property
    def has_masks(self) -> bool:
        return self.test.masks is not None
