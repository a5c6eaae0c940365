"""Expected gradients: against an unbatched reference loop and captum's GradientShap, seeded per
image, independent of the batch and of the chunking, and run from a tiny config end to end."""

from __future__ import annotations

import pytest
import torch

from xaibench.api import explain
from xaibench.errors import ConfigError
from xaibench.methods.expected_gradients import ExpectedGradients, draw_samples
from xaibench.seeding import image_generator


def references(n: int = 5) -> torch.Tensor:
    return (torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 255).to(torch.uint8)


def method(n_samples: int = 6, **kw) -> ExpectedGradients:
    m = ExpectedGradients(n_samples=n_samples, **kw)
    m.use_references(references())
    return m


def reference_loop(model, images, targets, refs, n_samples, seed):
    """Expected gradients one (image, sample) pair at a time, from the definition."""
    maps = []
    for x, t in zip(images, targets):
        gen = image_generator(seed, x)
        idx = torch.randint(refs.shape[0], (n_samples,), generator=gen)
        alphas = torch.rand(n_samples, generator=gen)
        acc = torch.zeros_like(x)
        for i, a in zip(idx.tolist(), alphas.tolist()):
            base = refs[i].float() / 255
            point = (base + a * (x - base))[None].requires_grad_(True)
            grad, = torch.autograd.grad(model(point)[0, t], point)
            acc += grad[0] * (x - base)
        maps.append((acc / n_samples).sum(0))
    return torch.stack(maps)


def test_equals_the_unbatched_reference(tiny_model, images, labels, one_thread):
    got = method(internal_batch_size=5).attribute(tiny_model, images, labels)
    want = reference_loop(tiny_model, images, labels, references(), 6, 0)
    assert got.dtype == torch.float32 and got.shape == (8, 16, 16)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_equals_captum_gradient_shap_with_the_same_draws(tiny_model, images, labels, one_thread,
                                                         monkeypatch):
    """captum's GradientShap (stdevs 0) computes the same estimator; its baselines and alphas come
    from numpy's global RNG, replaced here by this image's draws (one image per call)."""
    import numpy as np
    from captum.attr import GradientShap

    refs = references().float() / 255
    for x, t in zip(images[:3], labels[:3]):
        idx, alphas = draw_samples(x, 6, refs.shape[0], 0)
        monkeypatch.setattr(np.random, "choice", lambda *a, idx=idx, **k: idx.numpy())
        monkeypatch.setattr(np.random, "uniform", lambda *a, alphas=alphas, **k: alphas.double().numpy())
        want = GradientShap(tiny_model).attribute(x[None], baselines=refs, target=int(t), n_samples=6,
                                                   stdevs=0.0).sum(1)[0]
        got = method().attribute(tiny_model, x[None], t[None])[0]
        torch.testing.assert_close(got, want.float(), rtol=0, atol=1e-5)


def test_deterministic_and_batch_equals_one_by_one(tiny_model, images, labels, one_thread):
    a = method(seed=3).attribute(tiny_model, images, labels)
    assert torch.equal(a, method(seed=3).attribute(tiny_model, images, labels))
    assert not torch.equal(a, method(seed=4).attribute(tiny_model, images, labels))
    single = torch.cat([method(seed=3).attribute(tiny_model, images[i:i + 1], labels[i:i + 1])
                        for i in range(len(images))])
    torch.testing.assert_close(a, single, rtol=0, atol=1e-6)
    for rows in (1, 7, 48):  # the chunking only splits passes: every sum is in sample order
        torch.testing.assert_close(method(seed=3, internal_batch_size=rows).attribute(
            tiny_model, images, labels), a, rtol=0, atol=1e-6)


def test_needs_references(tiny_model, images, labels):
    with pytest.raises(ValueError, match="needs reference images"):
        ExpectedGradients(n_samples=2).attribute(tiny_model, images, labels)
    with pytest.raises(ConfigError, match="references="):
        explain(tiny_model, images, labels, "expected_gradients", n_samples=2)
    maps = explain(tiny_model, images, labels, "expected_gradients", references=references(), n_samples=2)
    assert maps.shape == (8, 16, 16)


def test_runs_from_a_tiny_config(tmp_path, one_thread):
    """Through the executor: the method gets the training split, and its explain cell's key holds
    the data cell's key (the references' content) and the method's parameters."""
    from xaibench.config import parse
    from xaibench.run.plan import plan as make_plan
    from xaibench.run.runner import run

    raw = {"run": {"device": "cpu", "batch_size": 8, "bootstrap": 100, "out": str(tmp_path),
                   "memory": "64MiB"},
           "dataset": {"name": "synthetic", "variant": "colour", "image_size": 32, "n_train": 16,
                       "n_val": 8, "n_test": 8, "radius": [3, 6], "n_shapes": [1, 3]},
           "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
           "methods": {"expected_gradients": {"n_samples": 4}},
           "metrics": {"aopc": {"patch_size": 8, "steps": 2}}}
    config = parse(raw, name="eg", source="test")
    the_plan = make_plan(config)
    cell = the_plan.get("resnet18/expected_gradients")
    assert cell.record["data"] == the_plan.get("data").key
    assert cell.record["method"]["params"] == {"n_samples": 4, "internal_batch_size": 64, "seed": 0}
    result = run(config, progress=False)
    refs = the_plan.methods["expected_gradients"].references
    assert refs is not None and refs.shape[0] == 16  # the training split
    assert "expected_gradients" in set(result.leaderboard["method"])
    # the budget changes no key: the same config with another budget reuses every cell
    other = make_plan(parse({**raw, "run": {**raw["run"], "memory": "auto"}}, name="eg", source="test"))
    assert [c.key for c in other.cells] == [c.key for c in the_plan.cells]
    assert other.run_id == the_plan.run_id
