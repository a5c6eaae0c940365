"""`xaibench check`: the contract checks shipped in the package catch a method that leaves a hook
or changes a weight, in plain words; the executor stops a run whose method changed the model."""

import pytest
import torch

import xaibench
from xaibench.check.contract import check_method, method_problems, report
from xaibench.cli import main
from xaibench.errors import ContractError
from xaibench.plugins import Method
from xaibench.registry import METHODS

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


class LeavesHook(Method):
    """Saliency that forgets to remove a forward hook on the last layer."""

    reduction = "abs"

    def attribute(self, model, images, targets):
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.register_forward_hook(lambda *_: None)
        return images.mean(1)


class ChangesWeight(Method):
    """A method that nudges the first convolution's weight."""

    reduction = "abs"

    def attribute(self, model, images, targets):
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        with torch.no_grad():
            conv.weight.add_(1e-3)
        return images.mean(1)


class Drifts(Method):
    """Maps that move by ``step`` (a share of their largest value) at every call, without the RNG:
    what atomic float adds do on CUDA (a tiny step) or a method with hidden state (a large one)."""

    reduction = "abs"
    step = 0.0

    def __init__(self):
        self.calls = 0

    def attribute(self, model, images, targets):
        self.calls += 1
        maps = images.mean(1)
        return maps + self.calls * self.step * maps.abs().max()


def drift(step: float, device: str) -> list[str]:
    cls = type("Drift", (Drifts,), {"step": step})
    model, x = tiny_net().to(device), torch.rand(2, 3, 16, 16).to(device)
    return method_problems(cls, model, x, torch.tensor([0, 1]).to(device))[1]


def test_maps_that_change_between_calls_are_caught_bitwise_on_the_cpu():
    assert drift(0.0, "cpu") == []
    assert drift(1e-7, "cpu") == ["not deterministic: two calls gave different maps"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_rounding_of_atomic_adds_passes_and_a_real_change_is_caught():
    assert drift(1e-6, "cuda") == []
    (problem,) = drift(1e-2, "cuda")
    assert problem.startswith("not deterministic: two calls gave different maps (max |difference|")
    share = float(problem.rsplit(", ", 1)[1].split()[0])  # "..., 0.0099 of the largest |value|)"
    assert share == pytest.approx(0.01, rel=0.05)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(METHODS, "_plugins", dict(METHODS._plugins))
    monkeypatch.setattr(METHODS, "_sources", dict(METHODS._sources))
    METHODS.register("leaves_hook")(LeavesHook)
    METHODS.register("changes_weight")(ChangesWeight)


def test_a_method_that_leaves_a_hook_is_caught():
    results = dict(check_method("leaves_hook", {}, LeavesHook))
    assert "a forward hook was left on net.6" in results["tiny CNN (batch 1)"]


def test_a_method_that_changes_a_weight_is_caught():
    results = dict(check_method("changes_weight", {}, ChangesWeight))
    assert "parameter net.0.weight changed" in results["tiny CNN (batch 1)"]
    assert "parameter net.conv1.weight changed" in results["tiny ResNet (batch 2)"]


def test_check_command_says_what_failed(registered, capsys):
    assert main(["check", "method", "changes_weight"]) == 1
    out = capsys.readouterr().out
    assert "method changes_weight: FAILED" in out and "- parameter net.0.weight changed" in out
    assert main(["check", "method", "saliency"]) == 0
    assert main(["check", "metric", "pointing_game"]) == 0
    assert main(["check", "model", "resnet18"]) == 0
    assert "method saliency: ok" in capsys.readouterr().out


def test_check_report_for_a_builtin_lists_skipped_models():
    ok, text = report("method", "attention_rollout")
    assert ok and "tiny CNN: skipped: it needs a vision transformer" in text


def test_the_run_stops_when_a_method_changes_the_model(registered):
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ContractError, match="method 'changes_weight' left the model changed: parameter "
                                            "net.net.0.weight changed"):
        xaibench.evaluate(tiny_net(), (images, labels, None), methods=["changes_weight"],
                          metrics={"aopc": {"patch_size": 4, "steps": 2}}, device="cpu", progress=False)
    with pytest.raises(ContractError, match="a forward hook was left on net.net.6"):
        xaibench.evaluate(tiny_net(), (images, labels, None), methods=["leaves_hook"],
                          metrics={"aopc": {"patch_size": 4, "steps": 2}}, device="cpu", progress=False)


def test_the_runner_refuses_a_method_for_the_family_of_a_built_model():
    from xaibench.check.guards import ensure_explains
    from xaibench.check.zoo import tiny_vit
    from xaibench.errors import RunError
    from xaibench.params import build

    method = build(METHODS.get("deep_taylor"), {})
    with pytest.raises(RunError, match=r"\[methods.lrp\] cannot explain model 'mine' \(a vit\)"):
        ensure_explains(method, "lrp", "mine", tiny_vit())
    ensure_explains(method, "lrp", "mine", tiny_net())  # a CNN: fine
