"""``xaibench check method|metric|model NAME``: the plugin contract, run on tiny models.

The checks ship with the package, so a plugin author can run them on their own plugin; the
contract tests (tests/test_contracts.py) run the same functions over every registered plugin.
Each check returns what failed in plain words ("parameter net.0.weight changed", "a forward hook
was left on net.layer4"); an empty list means the contract holds.

- method: maps [B,H,W] float32, finite, on the images' device; the model leaves exactly as it came
  (:mod:`xaibench.check.guards`), also from train mode and with a frozen parameter; the input is not
  modified; the global RNG is not used; two calls and two instances give the same maps (bitwise;
  on CUDA, under a run's deterministic kernels, to within 1e-3 of the largest |value|: the
  rounding of atomic float adds in ops that have no deterministic kernel). On a tiny
  CNN (batch 1 and 8), a tiny ResNet, a tiny ViT and a tiny joint model, where the method applies.
- metric: a score per image for every score key, finite, deterministic, curves [B, steps+1], a
  direction per key; the model unchanged; the global RNG not used.
- model (an architecture or "<source>:<name>"): built for 2 classes at 32 px, it returns finite
  logits [B, 2], leaves itself unchanged when run, and Grad-CAM and saliency explain it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xaibench.check.guards import changes, map_problems, snapshot
from xaibench.check.zoo import MODELS_FOR_METHODS, tiny_net
from xaibench.errors import ConfigError, ParamError
from xaibench.models.families import explains
from xaibench.params import build
from xaibench.plugins import MetricOutput
from xaibench.registry import METHODS, METRICS, MODELS
from xaibench.run.determinism import deterministic_cuda

# Cheaper settings for the built-ins that loop many passes (their defaults are checked by the
# contract tests too).
QUICK = {"rise": {"n_masks": 64}, "smoothgrad": {"n_samples": 4}, "integrated_gradients": {"n_steps": 8},
         "expected_gradients": {"n_samples": 8},
         "fgvis": {"max_steps": 20}, "inverse": {"max_steps": 50}}


# -- checks ------------------------------------------------------------------------------------------


def rng_states() -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if torch.cuda.is_available():
        states += torch.cuda.get_rng_state_all()
    return states


def method_problems(make: Callable[[], Any], model: nn.Module, images: torch.Tensor,
                    targets: torch.Tensor) -> tuple[torch.Tensor | None, list[str]]:
    """Run the method ``make()`` builds on ``model``; (its maps, what broke the contract). On
    CUDA under the deterministic kernels a run uses (:func:`xaibench.run.determinism.deterministic_cuda`)."""
    with deterministic_cuda(images.device):
        return _method_problems(make, model, images, targets)


def with_references(method: Any, images: torch.Tensor) -> Any:
    """``method``, handed 6 random reference images the size of ``images`` (seeded, on the CPU)
    when it declares a ``reference_split`` (as a run hands it that split's images)."""
    if getattr(method, "reference_split", None) is not None:
        method.use_references(torch.rand(6, *images.shape[1:], generator=torch.Generator().manual_seed(2)))
    return method


def _method_problems(make: Callable[[], Any], model: nn.Module, images: torch.Tensor,
                     targets: torch.Tensor) -> tuple[torch.Tensor | None, list[str]]:
    before, x_before, rng_before = snapshot(model), images.clone(), rng_states()
    method = with_references(make(), images)
    try:
        maps = method.attribute(model, images, targets)
    except Exception as exc:
        return None, [f"attribute raised {type(exc).__name__}: {exc}", *changes(model, before)]
    problems = [f"attribute {p}" for p in map_problems(maps, images)] + changes(model, before)
    if not torch.equal(images, x_before) or images.requires_grad:
        problems.append("the input images were modified (or left with requires_grad)")
    if not all(torch.equal(s, t) for s, t in zip(rng_before, rng_states())):
        problems.append("the global RNG was used: draw from a seeded torch.Generator (or fork_rng)")
    if problems:
        return maps, problems
    if (gap := _difference(maps, method.attribute(model, images, targets))) is not None:
        problems.append(f"not deterministic: two calls gave different maps{gap}")
    elif (gap := _difference(maps, with_references(make(), images).attribute(model, images, targets))
          ) is not None:
        problems.append(f"not deterministic: two instances with the same settings gave different maps{gap}")
    return maps, problems


# On CUDA some ops have no deterministic kernel (the backward of adaptive pooling to sizes that
# do not divide, of upsampling, index_add, ...): they add floats with atomics, in an order that
# changes from call to call, so a model that uses them gives maps equal up to that rounding, not
# bitwise, whatever the method. A method that draws unseeded noise differs by far more.
CUDA_RELATIVE_TOLERANCE = 1e-3


def _difference(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """None when ``b`` repeats ``a``: bitwise on the CPU; on CUDA, to within
    CUDA_RELATIVE_TOLERANCE of the largest |value|. Else what differed, in words."""
    if torch.equal(a, b):
        return None
    if a.shape != b.shape or a.device.type != "cuda":
        return ""
    gap, scale = (a - b).abs().max().item(), a.abs().max().item()
    if gap <= CUDA_RELATIVE_TOLERANCE * scale:
        return None
    share = gap / scale if scale else float("inf")
    return f" (max |difference| {gap:.2g}, {share:.2g} of the largest |value|)"


def check_method(name: str, params: dict | None = None, cls: Any = None) -> list[tuple[str, list[str]]]:
    """Method ``name`` (or the class ``cls``) on every tiny model it applies to:
    [(model label, problems)], a problem "skipped: ..." where it does not apply."""
    from xaibench.methods.layers import model_family

    cls = cls or METHODS.get(name)
    params = QUICK.get(name, {}) if params is None else params
    method = build(cls, params)
    gen = torch.Generator().manual_seed(1)
    out = []
    for label, factory, arch, batch in MODELS_FOR_METHODS:
        model = factory()
        if not explains(method, arch, model_family(model)):
            out.append((label, [f"skipped: it needs {method.requirement}"]))
            continue
        model.train()  # the method must restore train mode and requires_grad flags too
        next(model.parameters()).requires_grad_(False)
        images = torch.rand(batch, 3, 16, 16, generator=gen)
        targets = torch.arange(batch) % 2
        out.append((f"{label} (batch {batch})", method_problems(lambda: build(cls, params), model,
                                                                images, targets)[1]))
    return out


def metric_problems(metric: Any, model: nn.Module, batch: int = 5) -> list[str]:
    """Metric ``metric`` (built) on ``model`` with random maps on 32-px images: what broke."""
    gen = torch.Generator().manual_seed(0)
    x, maps = torch.rand(batch, 3, 32, 32, generator=gen), torch.rand(batch, 32, 32, generator=gen)
    masks = torch.zeros(batch, 32, 32, dtype=torch.bool)
    masks[:, 8:20, 4:16] = True
    y = torch.randint(0, 2, (batch,), generator=gen)
    before, rng_before = snapshot(model), rng_states()
    given = masks if metric.requires_masks else None
    # a sanity check that recomputes maps gets a method (saliency: deterministic, cheap)
    extra = {"method": build(METHODS.get("saliency"), {})} if metric.needs_method else {}
    try:
        out = metric.evaluate(model, x, y, maps, given, **extra)
    except Exception as exc:
        return [f"evaluate raised {type(exc).__name__}: {exc}", *changes(model, before)]
    problems = changes(model, before)
    if not all(torch.equal(s, t) for s, t in zip(rng_before, rng_states())):
        problems.append("the global RNG was used: draw from a seeded torch.Generator")
    if not isinstance(out, MetricOutput):
        return [*problems, f"evaluate returned {type(out).__name__}, not a MetricOutput"]
    name = next(iter(METRICS.names_for(type(metric))), None)
    if name is not None and name not in out.scores:
        problems.append(f"no score under the metric's own name {name!r} (got {sorted(out.scores)})")
    problems += [f"score {k!r} is not finite [B={batch}]" for k, v in out.scores.items()
                 if v.shape != (batch,) or not torch.isfinite(v).all()]
    problems += [f"curve {k!r} is not [B={batch}, steps+1]" for k, v in out.curves.items()
                 if v.dim() != 2 or v.shape[0] != batch]
    problems += [f"score {k!r} has no direction (True, False or None)" for k in out.scores
                 if type(metric).direction(k) not in (True, False, None)]
    again = metric.evaluate(model, x, y, maps, given, **extra)
    if not all(torch.equal(out.scores[k], again.scores[k]) for k in out.scores):
        problems.append("not deterministic: two calls gave different scores")
    return problems


def check_metric(name: str, cls: Any = None) -> list[tuple[str, list[str]]]:
    """Metric ``name`` (or the class ``cls``, default parameters) on the tiny CNN, batch 1 and 5."""
    metric = build(cls or METRICS.get(name), {})
    return [(f"tiny CNN (batch {b})", metric_problems(metric, tiny_net(), b)) for b in (1, 5)]


def model_problems(model: nn.Module, image_size: int = 32) -> list[str]:
    """A built pixel-space model for 2 classes: finite logits [B, 2], unchanged by a forward in
    eval mode, explained by Grad-CAM (its default layer) and saliency."""
    model.eval()
    x = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:
        return [f"the forward pass raised {type(exc).__name__}: {exc}"]
    if not isinstance(logits, torch.Tensor) or logits.shape != (2, 2) or not torch.isfinite(logits).all():
        return [f"expected finite logits [2, 2], got {getattr(logits, 'shape', type(logits).__name__)}"]
    problems = changes(model, before)
    for method in ("gradcam", "saliency"):
        _, found = method_problems(lambda m=method: build(METHODS.get(m), {}), model, x, torch.tensor([0, 1]))
        problems += [f"{method}: {p}" for p in found]
    return problems


def check_model(arch: str) -> list[tuple[str, list[str]]]:
    """The model of architecture (or source) ``arch``, built for 2 classes at 32 px."""
    try:
        cfg = build(MODELS.get(arch.split(":", 1)[0]), {"id": "check", "arch": arch})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            built = cfg.classifier(2, "check") if hasattr(cfg, "classifier") else cfg.build(2, (32, 32))
    except ParamError as exc:
        raise ConfigError(f"model {arch!r}: {exc}") from None
    return [("2 classes, 32x32 images", model_problems(built))]


CHECKS = {"method": check_method, "metric": check_metric, "model": check_model}


def report(kind: str, name: str) -> tuple[bool, str]:
    """(whether every check passed, the report in plain words, one line per model)."""
    results = CHECKS[kind](name)
    lines, ok = [], True
    for label, problems in results:
        if problems and problems[0].startswith("skipped"):
            lines.append(f"  {label}: {problems[0]}")
        elif problems:
            ok = False
            lines += [f"  {label}: FAILED"] + [f"    - {p}" for p in problems]
        else:
            lines.append(f"  {label}: ok")
    if all(p and p[0].startswith("skipped") for _, p in results):
        ok = False
        lines.append("  it applies to none of the tiny models")
    return ok, f"{kind} {name}: {'ok' if ok else 'FAILED'}\n" + "\n".join(lines)
