"""Images held in memory: the data handed to ``xaibench.evaluate`` from Python.

:meth:`Memory.holding` makes the dataset of the tensors, keyed by a hash of their content (its one
parameter), so the data cell's key (and every key below it) changes exactly when the images,
labels or masks do. The Python API hands that instance to the config check
(``xaibench.config.parse(..., given=...)``); a config file cannot name this dataset. Every image is a test
image (the train and validation splits are empty): models are given, not trained. The images stay
float32 as given (not rounded to 8 bits), so accuracy equals the model's on these very tensors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from xaibench.plugins import Dataset, ParamError

from .splits import Split, Splits


@dataclass(frozen=True)
class Tensors:
    """Test images [N,3,H,W] float32 in [0,1], labels [N] long, masks [N,H,W] bool or None."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    num_classes: int


def content_key(data: Tensors) -> str:
    """SHA-256 (24 hex digits) of the tensors' shapes, dtypes and bytes and the class count."""
    h = hashlib.sha256(f"{data.num_classes}".encode())
    for t in (data.images, data.labels, data.masks):
        if t is None:
            h.update(b"none")
            continue
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class Memory(Dataset):
    """Tensors given from Python (``xaibench.evaluate``), every image a test image.

    Args:
        key: a hash of the tensors (:func:`content_key`).
    """

    def __init__(self, *, key: str) -> None:
        raise ParamError("key", "the memory dataset holds tensors given to xaibench.evaluate from "
                                "Python; a config file cannot use it")

    @classmethod
    def holding(cls, data: Tensors) -> Memory:
        """The dataset of ``data``, keyed by its content."""
        dataset = cls.__new__(cls)
        dataset.key, dataset.data = content_key(data), data
        return dataset

    @property
    def has_masks(self) -> bool:
        return self.data.masks is not None

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.data.images.shape[2:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def trainable(self) -> bool:
        return False

    def fingerprint(self) -> str:
        return self.key

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        d = self.data
        h, w = self.image_size
        empty = Split(torch.zeros(0, 3, h, w), torch.zeros(0, dtype=torch.long),
                      None if d.masks is None else torch.zeros(0, h, w, dtype=torch.bool))
        return Splits(empty, empty, Split(d.images, d.labels, d.masks),
                      class_names=tuple(str(c) for c in range(d.num_classes)), fingerprint=self.key)
