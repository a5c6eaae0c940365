"""`xaibench check`: the contract checks shipped in the package catch a method that leaves a hook
or changes a weight, in plain words; the executor stops a run whose method changed the model."""

import pytest
import torch

import xaibench
from xaibench.check import check_method, report
from xaibench.cli import main
from xaibench.plugins import ContractError, Method
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
    from xaibench.check import tiny_vit
    from xaibench.config import ConfigError
    from xaibench.contract import ensure_explains
    from xaibench.plugins import build

    method = build(METHODS.get("deep_taylor"), {})
    with pytest.raises(ConfigError, match=r"\[methods.lrp\] cannot explain model 'mine' \(a vit\)"):
        ensure_explains(method, "lrp", "mine", tiny_vit())
    ensure_explains(method, "lrp", "mine", tiny_net())  # a CNN: fine
