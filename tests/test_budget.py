"""[run] memory: parsing, the footprint estimate, and methods and the perturbation engine that
finish in chunks under a small budget with the maps (curves) of one big batch."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from xaibench import budget
from xaibench.budget import Budget, BudgetError, bytes_per_input, parse_memory, rows_that_fit
from xaibench.check.guards import changes, snapshot
from xaibench.errors import ConfigError, ParamError
from xaibench.methods.expected_gradients import ExpectedGradients
from xaibench.methods.integrated_gradients import IntegratedGradients
from xaibench.methods.occlusion import Occlusion
from xaibench.methods.rise import RISE
from xaibench.metrics.perturbation import perturbation_curves


@contextmanager
def passes(model):
    """Yields a list of the batch sizes the model's forward sees in the block."""
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        yield seen
    finally:
        handle.remove()


def run(method, model, images, labels, nbytes=None):
    """(maps, forward batch sizes) of ``method`` under a budget of ``nbytes`` (None: none)."""
    with budget.limited(None if nbytes is None else Budget(nbytes, f"'{nbytes}B'")), passes(model) as seen:
        maps = method.attribute(model, images, labels)
    return maps, seen


def test_parse_memory():
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5GB") == 1_500_000_000
    assert parse_memory("64 mib") == 64 * 2**20
    assert parse_memory("auto") is None
    for bad in ("2 gigs", "", "-1GiB", "1KiB", "GiB"):
        with pytest.raises(ParamError, match="memory"):
            parse_memory(bad)


def test_a_bad_setting_is_a_config_error(tmp_path):
    from xaibench.config import parse

    raw = {"run": {"memory": "lots", "out": str(tmp_path)},
           "dataset": {"name": "synthetic", "image_size": 32, "n_train": 8, "n_val": 4, "n_test": 4},
           "models": {"resnet18": {"arch": "resnet18"}}, "methods": {"gradcam": {}}, "metrics": {"aopc": {}}}
    with pytest.raises(ConfigError, match=r"\[run\] memory: must be 'auto' or a size"):
        parse(raw, name="bad", source="test")


def test_auto_is_a_share_of_what_is_free():
    b = budget.resolve("auto", torch.device("cpu"))
    assert b is None or 0 < b.nbytes and "auto" in b.setting
    assert budget.resolve("3MiB", torch.device("cpu")).nbytes == 3 * 2**20


def test_the_probe_leaves_the_model_as_it_came(tiny_model):
    tiny_model.train()
    before = snapshot(tiny_model)
    x = torch.rand(4, 3, 16, 16)
    with_grad, without = bytes_per_input(tiny_model, x, grad=True), bytes_per_input(tiny_model, x, grad=False)
    assert with_grad > without > x[0].numel() * 4
    assert changes(tiny_model, before) == [] and tiny_model.training
    assert rows_that_fit(tiny_model, x, grad=False, wanted=64, what="t") == 64  # no budget: as asked
    with budget.limited(Budget(10 * without, "'x'")):
        assert rows_that_fit(tiny_model, x, grad=False, wanted=64, what="t") == 10
        assert rows_that_fit(tiny_model, x, grad=False, wanted=4, what="t") == 4


def test_occlusion_in_chunks_equals_one_big_batch(tiny_model, images, labels, one_thread):
    """Captum adds each evaluation's contribution to the running sum, so other chunks add the
    same terms in another grouping: equal to float rounding (1e-6), not bitwise."""
    method = Occlusion(window=8, stride=4, internal_batch_size=10_000)
    big, big_passes = run(method, tiny_model, images, labels)
    per_input = bytes_per_input(tiny_model, images, grad=False)
    small, small_passes = run(method, tiny_model, images, labels, nbytes=20 * per_input)
    assert max(big_passes) == 72 and max(small_passes) == 16  # 2 windows x 8 images per pass
    assert sum(small_passes) == sum(big_passes)
    torch.testing.assert_close(small, big, rtol=0, atol=1e-6)


def test_rise_in_chunks_equals_one_big_batch_bitwise(tiny_model, images, labels, one_thread):
    """The budget splits the forward passes only; the sums over masks keep their chunks."""
    method = RISE(n_masks=64, grid_size=4, batch_size=10_000)
    big, big_passes = run(method, tiny_model, images, labels)
    per_input = bytes_per_input(tiny_model, images, grad=False) + 16 * 16 * 4
    small, small_passes = run(method, tiny_model, images, labels, nbytes=30 * per_input)
    assert big_passes == [512] and max(small_passes) == 24 and len(small_passes) == 22
    assert torch.equal(small, big)


def test_gradient_methods_in_chunks_equal_one_big_batch(tiny_model, images, labels, one_thread):
    per_input = bytes_per_input(tiny_model, images, grad=True)
    ig = IntegratedGradients(n_steps=8, internal_batch_size=10_000)
    big, big_passes = run(ig, tiny_model, images, labels)
    small, small_passes = run(ig, tiny_model, images, labels, nbytes=17 * per_input)
    assert big_passes == [64] and max(small_passes) == 16  # captum: 2 steps of the 8 images
    torch.testing.assert_close(small, big, rtol=0, atol=1e-6)  # captum sums the chunks' results

    eg = ExpectedGradients(n_samples=6, internal_batch_size=10_000)
    eg.use_references(torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    big, big_passes = run(eg, tiny_model, images, labels)
    small, small_passes = run(eg, tiny_model, images, labels, nbytes=5 * per_input)
    assert big_passes == [48] and max(small_passes) == 5
    torch.testing.assert_close(small, big, rtol=0, atol=1e-6)


def test_the_engine_in_chunks_equals_one_big_batch_bitwise(tiny_model, images, labels, one_thread):
    maps = torch.rand(8, 16, 16, generator=torch.Generator().manual_seed(5))
    kw = dict(patch_size=4, steps=16, chunk_size=10_000, substrate="blur", blur_kernel=5)
    with passes(tiny_model) as seen:
        big = perturbation_curves(tiny_model, images, maps, labels, **kw)
    per_input = bytes_per_input(tiny_model, images, grad=False) + 16 * 16
    with budget.limited(Budget(25 * per_input, "'x'")), passes(tiny_model) as seen_small:
        small = perturbation_curves(tiny_model, images, maps, labels, **kw)
    assert seen == [136] and max(seen_small) == 25
    assert torch.equal(small, big)


def test_one_image_that_does_not_fit_names_the_setting(tiny_model, images, labels):
    per_input = bytes_per_input(tiny_model, images, grad=False)
    with budget.limited(Budget(per_input // 2, "'tiny'")):
        with pytest.raises(BudgetError, match=r"one input .* \[run\] memory = 'tiny'.*raise \[run\] memory$"):
            perturbation_curves(tiny_model, images, torch.rand(8, 16, 16), labels, patch_size=4, steps=2)
    with budget.limited(Budget(4 * per_input, "'small'")):  # fits 4 images, not the batch of 8
        with pytest.raises(BudgetError, match=r"occlusion: 8 inputs .*raise \[run\] memory or lower "
                                              r"\[run\] batch_size"):
            Occlusion().attribute(tiny_model, images, labels)


def test_the_probe_is_not_counted_in_costs(tiny_model, images, labels):
    from xaibench.run.execute import measured

    method = Occlusion(window=8, stride=4)
    with budget.limited(Budget(2**30, "'1GiB'")), measured(tiny_model, torch.device("cpu")) as cost:
        method.attribute(tiny_model, images, labels)
    assert cost[0].forwards == 8 + 72  # the clean images and 9 windows of each; no probe
