"""Leave the model exactly as it came: the context every method runs its model work in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
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


def find_layer(model: nn.Module, name: str | None) -> nn.Module:
    """The submodule called ``name`` (dotted); by default the model's ``cam_layer`` or its last
    Conv2d.

    Raises:
        ValueError: naming the missing layer and some valid names.
    """
    if name is None:
        name = getattr(model, "cam_layer", None)
        if name is None:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                raise ValueError("the model has no Conv2d layer; give the layer name explicitly")
            name = convs[-1]
    modules = dict(model.named_modules())
    if name not in modules:
        candidates = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Sequential)) and n]
        raise ValueError(f"layer {name!r} not found in the model; e.g. {', '.join(candidates[-6:])}")
    return modules[name]
