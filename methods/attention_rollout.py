"""Attention rollout (Abnar and Zuidema 2020) for vision transformers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch

from xaibench.methods.layers import attention_modules, has_class_token, prefix_tokens, token_grid
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method

Fusion = Literal["mean", "max", "min"]


def fuse_heads(attention: torch.Tensor, fusion: Fusion) -> torch.Tensor:
    """[B, heads, N, N] -> [B, N, N]: the mean, max or min over heads."""
    if fusion == "mean":
        return attention.mean(1)
    return attention.amax(1) if fusion == "max" else attention.amin(1)


def rollout(attentions: Sequence[torch.Tensor], *, fusion: Fusion = "mean") -> torch.Tensor:
    """Attention rollout [B, N, N] through the blocks (first block first).

    Per block the attention [B, heads, N, N] is fused over heads (A), the residual connection
    is accounted for by adding the identity, and the rows are renormalised to sum to one:
    Â = (A + I) / rowsum(A + I) (for the mean this is the paper's 0.5 A + 0.5 I). The rollout is
    the product Â_L ... Â_2 Â_1: row i holds how much token i at the output draws on each
    input token.
    """
    result: torch.Tensor | None = None
    for attention in attentions:
        a = fuse_heads(attention.float(), fusion)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("attention rollout needs at least one attention matrix")
    return result


def rollout_grid(
    joint: torch.Tensor, *, prefix: int, class_token: bool, grid: tuple[int, int]
) -> torch.Tensor:
    """The class token's row of a rollout [B, N, N] over the patch tokens, as [B, h, w].

    ``prefix`` tokens (class, distillation, register) precede the h*w patch tokens (row-major).
    Without a class token the rows of the patch tokens are averaged (what an average-pooling
    head reads).
    """
    rows = joint[:, 0] if class_token else joint[:, prefix:].mean(1)
    h, w = grid
    return rows[:, prefix:].reshape(rows.shape[0], h, w)


@contextmanager
def _timm_attention(module: torch.nn.Module, sink: list[torch.Tensor]) -> Iterator[None]:
    """Record timm's attention probabilities: the input of ``attn_drop`` on the unfused path
    (fused scaled-dot-product attention never forms them), ``fused_attn`` restored on exit."""
    attn_drop = getattr(module, "attn_drop", None)
    if not (hasattr(module, "fused_attn") and isinstance(attn_drop, torch.nn.Module)):
        raise ValueError(f"attention rollout cannot read the attention of {type(module).__name__}: it "
                         f"reads timm's Attention (fused_attn, attn_drop) or torch's MultiheadAttention")
    fused = module.fused_attn
    handle = module.attn_drop.register_forward_hook(lambda m, inputs, output: sink.append(inputs[0].detach()))
    module.fused_attn = False
    try:
        yield
    finally:
        module.fused_attn = fused
        handle.remove()


@contextmanager
def _torch_attention(module: torch.nn.MultiheadAttention, sink: list[torch.Tensor]) -> Iterator[None]:
    """Record a MultiheadAttention's per-head weights: ask for them (``need_weights``, not averaged)
    in a pre-hook and read them from the output; torchvision's blocks drop that second output."""

    def ask(m: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def read(m: torch.nn.Module, inputs: tuple, output: tuple) -> None:
        sink.append(output[1].detach())

    handles = [module.register_forward_pre_hook(ask, with_kwargs=True), module.register_forward_hook(read)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Each block's attention probabilities [B, heads, N, N] for ``images``, first block first.

    One forward pass in eval mode without gradients; every hook and flag is removed or restored
    afterwards, also on error.
    """
    modules = dict(model.named_modules())
    sinks: list[list[torch.Tensor]] = []
    with ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(torch.no_grad())
        for name in attention_modules(model):
            module = modules[name]
            sinks.append([])
            capture = _torch_attention if isinstance(module, torch.nn.MultiheadAttention) else _timm_attention
            stack.enter_context(capture(module, sinks[-1]))
        model(images)
    for name, sink in zip(attention_modules(model), sinks):
        if len(sink) != 1:
            raise ValueError(f"attention module {name} ran {len(sink)} times in one forward; expected once")
    return [sink[0] for sink in sinks]


class AttentionRollout(Method):
    """Attention rollout: the class token's attention to the patches, rolled out through the blocks.

    Abnar and Zuidema, "Quantifying attention flow in transformers", ACL 2020. Each block's
    attention is fused over heads (mean, max or min), the identity is added for the residual
    connection and the rows renormalised; the blocks are multiplied through (:func:`rollout`).
    The class token's row over the patch tokens is reshaped to the patch grid and upsampled to
    the image (:func:`rollout_grid`). The attention is read with hooks during one forward pass
    (timm's fused attention is switched to the unfused path for that pass and restored); the map
    does not depend on the target class. Only vision transformers (timm ViT/DeiT, torchvision
    ViT) have attention to roll out. Channel reduction: none (one map per image).

    Args:
        head_fusion: how the heads of a block are combined.
        interpolation: how the patch-grid map is upsampled to H x W.
    """

    reduction = "none: one token-grid map per image"
    requirement = "a vision transformer (timm ViT/DeiT or torchvision ViT): it rolls out self-attention"
    families = ("vit",)
    passes_per_image = 1  # one forward pass, no backward

    def __init__(
        self,
        *,
        head_fusion: Fusion = "mean",
        interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    ) -> None:
        self.head_fusion = head_fusion
        self.interpolation = interpolation

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Rollout maps [B, H, W] for images [B, 3, H, W] (``targets`` unused)."""
        joint = rollout(attention_maps(model, images), fusion=self.head_fusion)
        grid = token_grid(model, tuple(images.shape[-2:]))
        assert grid is not None  # attention_modules raised for a CNN
        cells = rollout_grid(joint, prefix=prefix_tokens(model), class_token=has_class_token(model),
                             grid=grid)
        return torch.nn.functional.interpolate(
            cells[:, None], size=tuple(images.shape[-2:]), mode=self.interpolation,
            align_corners=False if self.interpolation != "nearest" else None)[:, 0].float()
