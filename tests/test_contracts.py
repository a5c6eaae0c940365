"""Contract tests run over every registered method and metric (built-ins and plugins)."""

import pytest
import torch
from torch import nn

from xaibench.plugins import MetricOutput, build
from xaibench.registry import METHODS, METRICS

from .conftest import TINY


def snapshot(model):
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
    }


def no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                    or m._backward_pre_hooks) for m in model.modules())


def assert_unchanged(model, before):
    after = snapshot(model)
    assert before["params"].keys() == after["params"].keys()
    assert all(torch.equal(before["params"][k], after["params"][k]) for k in before["params"])
    assert before["modes"] == after["modes"]
    assert before["flags"] == after["flags"]
    assert all(g is None for g in after["grads"])
    assert no_hooks(model)


def model_for(method, kind):
    arch, factory = TINY[kind]
    if not method.supports(arch):
        pytest.skip(f"{kind} models are not supported by this method")
    return factory()


@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("batch", [1, 8])
def test_method_contract(name, batch, kind, images, labels):
    method = build(METHODS.get(name), {})
    model = model_for(method, kind)
    model.train()  # the method must restore train mode too
    next(model.parameters()).requires_grad_(False)  # ... and the requires_grad flags
    before = snapshot(model)
    x, y = images[:batch], labels[:batch]
    a = method.attribute(model, x, y)
    assert a.shape == (batch, 16, 16)
    assert a.dtype == torch.float32 and a.device == x.device
    assert torch.isfinite(a).all()
    assert_unchanged(model, before)
    b = method.attribute(model, x, y)
    assert torch.equal(a, b), "not deterministic"
    assert METHODS.get(name).reduction != "n/a", "state the channel reduction"


@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("name", METHODS.names())
def test_method_restores_model_when_it_raises(name, kind, images, labels):
    cls = METHODS.get(name)
    if not cls.uses_model:
        pytest.skip("a control that never calls the model")
    method = build(cls, {})
    model = model_for(method, kind)
    model.train()
    before = snapshot(model)

    def explode(module, inputs, output):
        raise RuntimeError("boom")

    handles = [m.register_forward_hook(explode) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with pytest.raises(RuntimeError, match="boom"):
        method.attribute(model, images, labels)
    for handle in handles:
        handle.remove()
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", METRICS.names())
@pytest.mark.parametrize("batch", [1, 5])
def test_metric_contract(name, batch):
    gen = torch.Generator().manual_seed(0)
    metric = build(METRICS.get(name), {})
    metric.check_image_size(32, 32)
    model = TINY["plain"][1]()
    x = torch.rand(batch, 3, 32, 32, generator=gen)
    attributions = torch.rand(batch, 32, 32, generator=gen)
    masks = torch.zeros(batch, 32, 32, dtype=torch.bool)
    masks[:, 8:20, 4:16] = True
    y = torch.randint(0, 2, (batch,), generator=gen)
    before = snapshot(model)
    out = metric.evaluate(model, x, y, attributions, masks if metric.requires_masks else None)
    assert isinstance(out, MetricOutput)
    assert METRICS.get(name).registry_name in out.scores
    for values in out.scores.values():
        assert values.shape == (batch,) and torch.isfinite(values).all()
    for curve in out.curves.values():
        assert curve.shape[0] == batch and curve.dim() == 2
    assert_unchanged(model, before)
    again = metric.evaluate(model, x, y, attributions, masks if metric.requires_masks else None)
    assert all(torch.equal(out.scores[k], again.scores[k]) for k in out.scores)
