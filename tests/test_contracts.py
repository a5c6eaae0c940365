"""Contract tests run over every registered method and metric (built-ins and plugins)."""

import inspect
from typing import Any

import pytest
import torch

from xaibench.check import guards as contract
from xaibench.check.contract import QUICK, method_problems, metric_problems, with_references
from xaibench.methods.layers import model_family
from xaibench.params import build, parameters
from xaibench.plugins import MetricOutput
from xaibench.registry import METHODS, METRICS

from .conftest import tiny_joint, tiny_net, tiny_resnet, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(model):
    return contract.snapshot(model)


def assert_unchanged(model, before):
    problems = contract.changes(model, before)
    assert not problems, "; ".join(problems)
    assert all(p.grad is None for p in model.parameters()), "a gradient was left"


# the CUDA cases carry the `cuda` marker: `make gpu-check` runs them (`pytest -m cuda`)
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]

# Cheaper settings for the built-ins that loop many passes (their defaults are built, checked
# and documented in test_builtin_method_declares_cost_and_parameters).
CHEAP = QUICK


# The architecture name each test model stands for, as a config would give it.
ARCHS = {tiny_net: "tiny", tiny_resnet: "tiny", tiny_joint: "joint_xml_vgg", tiny_vit: "timm:vit_tiny"}


def applies(method, factory, model) -> bool:
    """Whether ``method`` explains ``model``: by its architecture name (config time) and by the
    built model's family (run time)."""
    return method.supports(ARCHS[factory]) and method.supports_family(model_family(model))


def applicable(name, factory=tiny_net):
    """``factory``'s model; for the default factory, the first of the tiny joint model and the
    tiny ViT that the method explains when it does not explain the tiny CNN."""
    method = build(METHODS.get(name), CHEAP.get(name, {}))
    model = factory()
    if applies(method, factory, model):
        return model
    if factory is not tiny_net:
        pytest.skip(f"{name} does not explain {ARCHS[factory]} models: it needs {method.requirement}")
    for fallback in (tiny_joint, tiny_vit):
        model = fallback()
        if applies(method, fallback, model):
            return model
    raise AssertionError(f"{name} explains none of the test models")


def check_method(name, model, x, y, params=None):
    """Run method ``name`` on ``model``; check the whole contract (xaibench.check.contract, the checks
    `xaibench check method` runs); return the maps."""
    maps, problems = method_problems(lambda: build(METHODS.get(name), params or {}), model, x, y)
    assert not problems, "; ".join(problems)
    return maps


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("device", DEVICES)
def test_method_contract(name, batch, device, images, labels):
    model = applicable(name).to(device)
    model.train()  # the method must restore train mode too
    next(model.parameters()).requires_grad_(False)  # ... and the requires_grad flags
    check_method(name, model, images[:batch].to(device), labels[:batch].to(device), CHEAP.get(name))
    assert METHODS.get(name).reduction != "n/a", "state the channel reduction"


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("device", DEVICES)
def test_method_contract_on_joint_model(name, device, images, labels):
    model = applicable(name, tiny_joint).to(device)
    check_method(name, model, images[:2].to(device), labels[:2].to(device), CHEAP.get(name))
    assert model._source.detach is False, "constant_gates() left entered"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract_on_resnet(name, images, labels):
    """Batch norms, residual blocks, in-place and re-used ReLUs: all restored bitwise."""
    model = applicable(name, tiny_resnet)
    model.train()
    check_method(name, model, images[:2], labels[:2], CHEAP.get(name))


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("source", ["timm", "torchvision"])
@pytest.mark.parametrize("device", DEVICES)
def test_method_contract_on_vit(name, source, device):
    """Every method on a 2-block ViT at 32 px, patch 8 (timm and torchvision), or its refusal:
    a method that does not explain ViTs says so by family and by architecture name."""
    method = build(METHODS.get(name), CHEAP.get(name, {}))
    model = tiny_vit(img_size=32, patch_size=8, source=source).to(device)
    assert model_family(model) == "vit"
    if not method.supports_family("vit"):
        for arch in ("timm:vit_small_patch16_224", "timm:deit_tiny_patch16_224", "torchvision:vit_b_16"):
            assert not method.supports(arch), f"{name} refuses ViTs by family but accepts {arch}"
        assert method.requirement != "any model", "say what the method needs"
        return
    model.train()
    next(model.parameters()).requires_grad_(False)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 32, 32, generator=gen).to(device)
    y = torch.tensor([0, 1, 1], device=device)
    a = check_method(name, model, x, y, CHEAP.get(name))
    if METHODS.get(name).uses_model:
        assert a.abs().sum() > 0, "an all-zero map"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_works_when_called_under_no_grad(name, images, labels):
    model = applicable(name)
    expected = with_references(build(METHODS.get(name), CHEAP.get(name, {})), images).attribute(
        model, images[:2], labels[:2])
    with torch.no_grad():
        a = with_references(build(METHODS.get(name), CHEAP.get(name, {})), images).attribute(
            model, images[:2], labels[:2])
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("make", [tiny_net, tiny_resnet, tiny_joint, tiny_vit])
def test_method_restores_model_when_it_raises(name, make, images, labels):
    cls = METHODS.get(name)
    if not cls.uses_model:
        pytest.skip("a control that never calls the model")
    method = with_references(build(cls, CHEAP.get(name, {})), images)
    model = applicable(name, make)
    model.train()
    before = snapshot(model)

    def explode(module, inputs, output):
        raise RuntimeError("boom")

    # every conv raises: whatever part of the model a method runs (the explainer included) fails
    handles = [m.register_forward_hook(explode) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises(RuntimeError, match="boom"):
        method.attribute(model, images[:2], labels[:2])
    for handle in handles:
        handle.remove()
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", [n for n in METHODS.names()
                                  if METHODS.get(n).__module__.startswith("xaibench.methods.")])
def test_builtin_method_declares_cost_and_parameters(name, images, labels):
    cls = METHODS.get(name)
    method = with_references(build(cls, {}), images)  # the defaults are valid and run
    passes = method.passes_per_image
    assert passes is None or (isinstance(passes, int) and passes >= 0)
    assert (passes == 0) == (not cls.uses_model) or passes is None
    a = method.attribute(applicable(name), images[:1], labels[:1])
    assert a.shape == (1, 16, 16) and torch.isfinite(a).all()
    from xaibench.plugins import Method

    declared = any("passes_per_image" in vars(k) for k in cls.__mro__[:cls.__mro__.index(Method)])
    assert declared, "declare passes_per_image (None if unknown)"
    for key, (hint, default) in parameters(cls).items():
        assert hint is not Any, f"{key}: add a type hint"
        assert default is not inspect.Parameter.empty, f"{key}: give a default"
    assert not [p for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_KEYWORD, p.VAR_POSITIONAL)
                and p.name != "self"], "hyperparameters are keyword-only, no *args/**kwargs"
    assert cls.__doc__ and cls.reduction != "n/a"


@pytest.mark.parametrize("name", METRICS.names())
@pytest.mark.parametrize("batch", [1, 5])
def test_metric_contract(name, batch):
    gen = torch.Generator().manual_seed(0)
    metric = build(METRICS.get(name), {})
    metric.check_image_size(32, 32)
    model = tiny_net()
    x = torch.rand(batch, 3, 32, 32, generator=gen)
    attributions = torch.rand(batch, 32, 32, generator=gen)
    masks = torch.zeros(batch, 32, 32, dtype=torch.bool)
    masks[:, 8:20, 4:16] = True
    y = torch.randint(0, 2, (batch,), generator=gen)
    problems = metric_problems(metric, model, batch)
    assert not problems, "; ".join(problems)
    # a sanity check that recomputes maps gets a method (saliency: deterministic, cheap)
    extra = {"method": build(METHODS.get("saliency"), {})} if metric.needs_method else {}
    out = metric.evaluate(model, x, y, attributions, masks if metric.requires_masks else None, **extra)
    assert isinstance(out, MetricOutput)
    cls = METRICS.get(name)
    assert set(cls.directions) <= set(out.scores), "a direction for a score key the metric never returns"


@pytest.mark.parametrize("name", [n for n in METRICS.names()
                                  if METRICS.get(n).__module__.startswith("xaibench.metrics.")])
def test_builtin_metric_declares_keyword_only_parameters(name):
    cls = METRICS.get(name)
    for key, (hint, default) in parameters(cls).items():
        assert hint is not Any, f"{key}: add a type hint"
        assert default is not inspect.Parameter.empty, f"{key}: give a default"
    assert not [p for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_KEYWORD, p.VAR_POSITIONAL)
                and p.name != "self"], "hyperparameters are keyword-only, no *args/**kwargs"
    assert cls.__doc__ and METRICS.names_for(cls) == [name]


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_declares_its_family(name):
    from xaibench.plugins import FAMILIES

    assert METRICS.get(name).family in FAMILIES, f"{name}: family must be one of {FAMILIES}"
