"""Leave the model exactly as it came: the context every method runs its model work in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode; restore every module's train flag and every parameter's
    ``requires_grad`` afterwards, also when the body raises."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def find_layer(model: torch.nn.Module, name: str | None) -> torch.nn.Module:
    """The submodule called ``name`` (dotted); by default the model's Grad-CAM layer
    (``xaibench.methods.layers.default_cam_layer``: its ``cam_layer``, else its family's default:
    the last Conv2d of a CNN, the last block's first LayerNorm of a vision transformer).

    Raises:
        ValueError: naming the missing layer and some valid names.
    """
    if name is None:
        from xaibench.methods.layers import default_cam_layer

        name = default_cam_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        candidates = [n for n, m in modules.items()
                      if isinstance(m, (torch.nn.Conv2d, torch.nn.Sequential)) and n]
        raise ValueError(f"layer {name!r} not found in the model; e.g. {', '.join(candidates[-6:])}")
    return modules[name]
