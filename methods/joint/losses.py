"""xML losses as pure functions of the explanation z [B, 1, H, W] (or [B, H, W]).

Per-image terms return [B]; :func:`total` averages over the batch.
"""

from __future__ import annotations

from typing import Literal

import torch


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], -1)


def sparsity(z: torch.Tensor) -> torch.Tensor:
    """L1 sparsity: mean |z| per image -> [B]."""
    return _flat(z.abs()).mean(1)


def contiguity(z: torch.Tensor) -> torch.Tensor:
    """Total variation: mean |z[i+1,j] - z[i,j]| + mean |z[i,j+1] - z[i,j]| per image -> [B].

    Each direction is averaged over its own count of neighbour pairs.
    """
    dy = _flat((z[..., 1:, :] - z[..., :-1, :]).abs()).mean(1)
    dx = _flat((z[..., :, 1:] - z[..., :, :-1]).abs()).mean(1)
    return dy + dx


def unsupervised(z: torch.Tensor, *, beta: float) -> torch.Tensor:
    """beta * L1 + (1 - beta) * TV per image -> [B]."""
    return beta * sparsity(z) + (1 - beta) * contiguity(z)


def outside_mask(z: torch.Tensor, masks: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """| sum((1 - m) * z) / (sum(1 - m) + eps) | per image -> [B]: explanation outside the mask.

    Args:
        masks: [B, H, W] (bool or {0, 1}), 1 on the object.
    """
    outside = 1.0 - masks.reshape(z.shape[0], -1).to(z.dtype)
    return ((_flat(z) * outside).sum(1) / (outside.sum(1) + eps)).abs()


def hybrid(z: torch.Tensor, masks: torch.Tensor, *, beta: float, gamma: float,
           images: Literal["all", "positives"] = "all") -> torch.Tensor:
    """Unsupervised loss + gamma * the outside-the-mask term, per image -> [B].

    Args:
        images: which images get the outside-the-mask term: "all" (the paper's: on an image with
            an empty mask, e.g. a synthetic negative, it is the map's mean, a second L1 term), or
            "positives" (only images whose mask is not empty).
    """
    outside = outside_mask(z, masks)
    if images == "positives":
        outside = outside * masks.reshape(z.shape[0], -1).any(1).to(z.dtype)
    elif images != "all":
        raise ValueError(f"images must be 'all' or 'positives', got {images!r}")
    return unsupervised(z, beta=beta) + gamma * outside


def total(
    logits: torch.Tensor,
    labels: torch.Tensor,
    explanation_loss: torch.Tensor,
    *,
    alpha: float,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """alpha * CE + (1 - alpha) * mean(L_expl): returns (total, CE, mean L_expl), scalars.

    CE is the (optionally class-weighted) mean cross-entropy of the batch.
    """
    ce = torch.nn.functional.cross_entropy(logits, labels, weight=class_weights)
    expl = explanation_loss.mean()
    return alpha * ce + (1 - alpha) * expl, ce, expl
