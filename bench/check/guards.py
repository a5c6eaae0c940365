"""The method contract at run time, in plain words: what a method (or a metric) left changed on a
model, whether it can explain the built model, and whether its maps have the contract's shape.

:func:`snapshot` records everything a plugin could leave behind (parameters, buffers, gradients,
``requires_grad`` flags, train flags, hooks, patched forwards, added or removed modules, plain
module attributes); :func:`changes` compares the model with it and says what differs, one short
sentence each ("parameter net.layer1.0.conv1.weight changed", "a forward hook was left on
net.layer4"). The executor runs it around a method's first computed shard
(:func:`ensure_unchanged`); ``xaibench check`` and the contract tests around every call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xaibench.errors import ContractError, RunError
from xaibench.models.families import explains

HOOKS = {"_forward_hooks": "a forward hook", "_forward_pre_hooks": "a forward pre-hook",
         "_backward_hooks": "a backward hook", "_backward_pre_hooks": "a backward pre-hook"}


def _where(name: str) -> str:
    return name or "the model"


def _plain(module: nn.Module) -> dict[str, Any]:
    """A module's public attributes of plain types (e.g. timm's ``fused_attn``)."""
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str, type(None)))}


def _structure(module: nn.Module) -> tuple[type, tuple[str, ...]]:
    return type(module), tuple(sorted(n for n, _ in module.named_parameters(recurse=False)))


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything :func:`changes` compares, copied (parameters and buffers cloned)."""
    modules = dict(model.named_modules())
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "params": {n for n, _ in model.named_parameters()},
        "grads": {n: (None if p.grad is None else p.grad.detach().clone())
                  for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in modules.items()},
        "structure": {n: _structure(m) for n, m in modules.items()},
        "hooks": {n: {h: tuple(getattr(m, h, {})) for h in HOOKS} for n, m in modules.items()},
        "patched": {n for n, m in modules.items() if "forward" in vars(m)},
        "plain": {n: _plain(m) for n, m in modules.items()},
    }


def _tensor_changes(model: nn.Module, before: dict[str, Any]) -> list[str]:
    out = []
    now = model.state_dict(keep_vars=True)
    for name, old in before["tensors"].items():
        kind = "parameter" if name in before["params"] else "buffer"
        new = now.get(name)
        if new is None:
            out.append(f"{kind} {name} was removed")
        elif new.shape != old.shape or new.dtype != old.dtype or new.device != old.device:
            out.append(f"{kind} {name} changed its shape, dtype or device")
        elif not torch.equal(new.detach(), old):
            out.append(f"{kind} {name} changed")
    out += [f"{'parameter' if n in dict(model.named_parameters()) else 'buffer'} {n} was added"
            for n in now if n not in before["tensors"]]
    for name, p in model.named_parameters():
        old = before["grads"].get(name)
        if name in before["flags"] and p.requires_grad != before["flags"][name]:
            out.append(f"requires_grad of parameter {name} was left {p.requires_grad}")
        if old is None and p.grad is not None:
            out.append(f"a gradient was left in parameter {name}.grad")
        elif old is not None and p.grad is not None and not torch.equal(p.grad, old):
            out.append(f"the gradient in parameter {name}.grad changed")
    return out


def _module_changes(model: nn.Module, before: dict[str, Any]) -> list[str]:
    out = []
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if name not in before["structure"]:
            out.append(f"module {_where(name)} was added")
            continue
        if _structure(module) != before["structure"][name]:
            out.append(f"module {_where(name)} was replaced or its parameters changed")
        if module.training != before["modes"][name]:
            out.append(f"{_where(name)} was left in {'train' if module.training else 'eval'} mode")
        for hook, words in HOOKS.items():
            if set(getattr(module, hook, {})) - set(before["hooks"][name][hook]):
                out.append(f"{words} was left on {_where(name)}")
        if ("forward" in vars(module)) != (name in before["patched"]):
            out.append(f"the forward of {_where(name)} was patched and not restored")
        plain = _plain(module)
        for key in sorted(set(plain) | set(before["plain"][name])):
            if plain.get(key, "<absent>") != before["plain"][name].get(key, "<absent>"):
                out.append(f"attribute {key} of {_where(name)} was left changed")
    out += [f"module {_where(n)} was removed" for n in before["structure"] if n not in modules]
    return out


def changes(model: nn.Module, before: dict[str, Any]) -> list[str]:
    """What differs between ``model`` and its :func:`snapshot` ``before``, in plain words."""
    return _tensor_changes(model, before) + _module_changes(model, before)


def ensure_unchanged(model: nn.Module, before: dict[str, Any], method_id: str) -> None:
    """Raise :class:`ContractError` naming what method ``method_id`` left changed, if anything."""
    found = changes(model, before)
    if found:
        raise ContractError(f"method {method_id!r} left the model changed: {'; '.join(found[:5])}"
                            f"{f' (and {len(found) - 5} more)' if len(found) > 5 else ''}; a method "
                            f"must undo everything it does to the model (hooks, flags, weights)")


def ensure_explains(method: Any, method_id: str, model_id: str, model: nn.Module) -> None:
    """Raise :class:`RunError` when ``method`` cannot explain the family of the built ``model`` (for
    models whose family only the built network tells: ``python:`` and ``torchscript:`` sources)."""
    from xaibench.methods.layers import model_family

    family = model_family(model)
    if not explains(method, family=family):
        raise RunError(f"[methods.{method_id}] cannot explain model {model_id!r} (a {family}): it "
                       f"needs {method.requirement}; list the models it explains with models = [...]")


class MethodError(RunError):
    """An explainer returned something that breaks the method contract."""


def map_problems(maps: Any, images: torch.Tensor, offset: int = 0) -> list[str]:
    """What breaks the maps contract (the run and ``xaibench check`` ask this one function): a
    tensor [B,H,W] float32 on the images' device, finite (else the first test image, counted from
    ``offset``, that holds NaN or inf)."""
    b, _, h, w = images.shape
    if not isinstance(maps, torch.Tensor):
        return [f"returned {type(maps).__name__}, not a tensor"]
    if maps.shape != (b, h, w) or maps.dtype != torch.float32 or maps.device != images.device:
        return [f"returned {maps.dtype} {tuple(maps.shape)} on {maps.device}; expected float32 "
                f"{(b, h, w)} on {images.device}"]
    bad = (~torch.isfinite(maps)).flatten(1).any(1)
    return [f"produced NaN or inf on test image {offset + int(bad.nonzero()[0])}"] if bad.any() else []


def check_maps(maps: torch.Tensor, images: torch.Tensor, method_id: str, offset: int) -> None:
    """Raise :class:`MethodError` when ``maps`` break the contract (:func:`map_problems`)."""
    problems = map_problems(maps, images, offset)
    if problems:
        raise MethodError(f"method {method_id!r} {problems[0]}")
