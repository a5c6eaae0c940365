"""Metric sources: ``quantus:<Class>`` run through a config (parse -> run) gives, in scores.csv, the
per-image scores of a direct Quantus call on the same model, images, masks and the run's cached
maps; costs are counted; config errors are one line (an unknown class before torch is loaded);
cells are keyed by Quantus' version and every parameter; `xaibench list` shows the source."""

import copy
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
import torch

from xaibench.api import check_data, model_key, wrapped
from xaibench.config import ConfigError, PluginSpec, parse
from xaibench.datasets import memory
from xaibench.io import from_half, load_checked
from xaibench.models.sources import GivenModel
from xaibench.params import build
from xaibench.registry import METRICS
from xaibench.run.plan import plugin_record
from xaibench.run.runner import run

from .conftest import tiny_net

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"disable_warnings": True, "display_progressbar": False}
METRIC_TABLE = {
    "quantus:FaithfulnessEstimate": {"features_in_step": 16},  # faithfulness
    "sparse": {"plugin": "quantus:Sparseness"},  # complexity
    "quantus:RelevanceMassAccuracy": {},  # localisation, needs masks
    "quantus:MaxSensitivity": {"nr_samples": 2, "seed": 3},  # robustness, re-explains
}


def tensors(n=8, size=16):
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(n, 3, size, size, generator=gen)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        masks[i, i % 5: i % 5 + 8, 2 + i % 3: 10 + i % 3] = True
    return images, torch.tensor([0, 1] * (n // 2)), masks


def given_config(tmp_path, metrics, *, with_masks=True):
    """A raw config on a tiny given model and tensors (as xaibench.evaluate makes it), its
    ``given`` plugins and the wrapped model."""
    net = wrapped(tiny_net(), None, None)
    images, labels, masks = tensors()
    dataset = memory.Memory.holding(check_data(images, labels, masks if with_masks else None, 2))
    given = {"dataset": dataset, "models.tiny": GivenModel.holding(net, id="tiny", key=model_key(net))}
    raw = {"run": {"seed": 0, "device": "cpu", "batch_size": 4, "bootstrap": 100, "out": str(tmp_path)},
           "dataset": {"name": "memory", "key": dataset.key},
           "models": {"tiny": {"arch": given["models.tiny"].arch, "key": given["models.tiny"].key}},
           "methods": {"saliency": {}}, "metrics": copy.deepcopy(metrics)}
    return raw, given, net


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantus-run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        raw, given, net = given_config(tmp, METRIC_TABLE)
        config = parse(raw, name="quantus", source="t.toml", given=given)
        result = run(config, progress=False)
    finally:
        torch.set_num_threads(threads)
    (cell,) = result.plan.of_kind("explain")
    shards = sorted(cell.path.glob("*.pt"))
    maps = torch.cat([from_half(load_checked(p)) for p in shards])
    return result, net, maps


def saliency(model, inputs, targets, **_):
    """Saliency by hand (captum, max |gradient| over channels), the explain_func of the direct calls."""
    import captum.attr

    x = torch.as_tensor(inputs, dtype=torch.float32)
    y = torch.as_tensor(targets).long()
    return captum.attr.Saliency(model).attribute(x, target=y).abs().amax(1).detach().numpy()


def direct(name, net, maps, keywords, *, seed=0):
    """Quantus called by hand on each shard (4 images) of the run: the cached maps, the masks, the
    model; numpy's and torch's global generators seeded as the source seeds each shard."""
    from xaibench.metrics.quantus_source import shard_seed
    from xaibench.seeding import seeded_global_rngs

    images, labels, masks = tensors()
    out = []
    for start in (0, 4):
        sl = slice(start, start + 4)
        metric = getattr(quantus, name)(**keywords, **QUIET)
        extra = {}
        if name == "RelevanceMassAccuracy":
            extra["s_batch"] = masks[sl, None].numpy().astype(np.float32)
        if name == "MaxSensitivity":
            extra["explain_func"] = saliency
        with seeded_global_rngs(shard_seed(seed, images[sl]), torch.device("cpu")):
            out += list(metric(model=net, x_batch=images[sl].numpy(), y_batch=labels[sl].numpy(),
                               a_batch=maps[sl, None].numpy(), channel_first=True, device="cpu", **extra))
    return np.asarray(out, dtype=float)


@pytest.mark.parametrize("column, name, keywords", [
    ("quantus:FaithfulnessEstimate", "FaithfulnessEstimate", {"features_in_step": 16}),
    ("sparse", "Sparseness", {}),
    ("quantus:RelevanceMassAccuracy", "RelevanceMassAccuracy", {}),
    ("quantus:MaxSensitivity", "MaxSensitivity", {"nr_samples": 2}),
])
def test_scores_equal_a_direct_quantus_call(finished, column, name, keywords):
    result, net, maps = finished
    scores = pd.read_csv(result.run_dir / "scores.csv")
    ours = scores[scores["metric"] == column].sort_values("index")["value"].to_numpy()
    assert len(ours) == 8
    seed = 3 if name == "MaxSensitivity" else 0
    np.testing.assert_allclose(ours, direct(name, net, maps, keywords, seed=seed), rtol=1e-5, atol=1e-6)


def test_direction_family_and_needs_come_from_quantus(finished):
    fe, sp = METRICS.get("quantus:FaithfulnessEstimate"), METRICS.get("quantus:Sparseness")
    rma, ms = METRICS.get("quantus:RelevanceMassAccuracy"), METRICS.get("quantus:MaxSensitivity")
    assert (fe.family, fe.higher_is_better, fe.requires_masks, fe.needs_method) == (
        "faithfulness", True, False, False)
    assert (sp.family, sp.higher_is_better, sp.requires_masks) == ("complexity", True, False)
    assert (rma.family, rma.requires_masks) == ("localisation", True)
    assert (ms.family, ms.higher_is_better, ms.needs_method) == ("robustness", False, True)
    assert METRICS.get("quantus:Complexity").higher_is_better is False
    assert METRICS.get("quantus:Completeness").family == "faithfulness"  # Axiomatic
    result, _, _ = finished
    board = pd.read_csv(result.run_dir / "leaderboard.csv").iloc[0]
    for column, direction, family in [("quantus:FaithfulnessEstimate", "higher", "faithfulness"),
                                      ("sparse", "higher", "complexity"),
                                      ("quantus:MaxSensitivity", "lower", "robustness")]:
        assert (board[f"{column}_direction"], board[f"{column}_family"]) == (direction, family)
        assert board[f"{column}_ci_low"] <= board[f"{column}_mean"] <= board[f"{column}_ci_high"]
        assert f"{column}_rank" in board.index


def test_costs_are_counted(finished):
    result, _, _ = finished
    costs = pd.read_csv(result.run_dir / "costs.csv")
    score = costs[costs["stage"] == "score"].set_index("metric")
    assert set(METRIC_TABLE) <= set(score.index)
    assert score.loc["quantus:FaithfulnessEstimate", "forwards_per_image"] > 1  # the perturbed inputs
    assert score.loc["sparse", "forwards_per_image"] == 0
    assert (score["seconds_per_image"] > 0).all()


def one_line_error(raw, given, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse(raw, name="t", source="t.toml", given=given)
    assert "\n" not in str(err.value)


def test_config_errors_are_one_line(tmp_path):
    raw, given, _ = given_config(tmp_path, {"m": {"plugin": "quantus:FaithfulnesEstimate"}})
    one_line_error(raw, given, r"t.toml: \[metrics.m\] unknown metric 'quantus:FaithfulnesEstimate'.*"
                               r"did you mean FaithfulnessEstimate")
    raw["metrics"] = {"m": {"plugin": "quantus:Sparseness", "normalize": True}}
    one_line_error(raw, given, r"\[metrics.m\] normalize: unknown key; allowed keys: abs, batch_size, "
                               r"normalise, seed, softmax")
    raw["metrics"] = {"m": {"plugin": "quantus:FaithfulnessEstimate", "features_in_step": "many"}}
    one_line_error(raw, given, r"\[metrics.m\] features_in_step: expected int, got 'many'")
    raw["metrics"] = {"m": {"plugin": "quantus:Focus"}}
    one_line_error(raw, given, r"\[metrics.m\] metric 'quantus:Focus' cannot run in xaibench: it needs "
                               r"mosaics")
    raw["metrics"] = {"m": {"plugin": "quantus:InputInvariance"}}  # a model it cannot call
    one_line_error(raw, given, r"\[metrics.m\] metric 'quantus:InputInvariance' cannot run in xaibench: it "
                               r"shifts the input through the bias of the model's first module")
    raw, given, _ = given_config(tmp_path, {"quantus:RelevanceMassAccuracy": {}}, with_masks=False)
    one_line_error(raw, given, r"\[metrics.quantus:RelevanceMassAccuracy\] needs ground-truth masks")


def test_an_unknown_class_is_reported_before_torch_is_loaded():
    code = textwrap.dedent("""
        import sys
        from xaibench.cli import load_torch_lazily
        load_torch_lazily()
        from xaibench.registry import METRICS, RegistryError
        try:
            METRICS.check("quantus:FaithfulnesEstimate")
        except RegistryError as exc:
            print(str(exc).splitlines()[0])
        print("torch._C" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    message, loaded = out.splitlines()
    assert message.startswith("unknown metric 'quantus:FaithfulnesEstimate': Quantus has no metric class "
                              "'FaithfulnesEstimate'; did you mean FaithfulnessEstimate")
    assert loaded == "False"


def test_cells_are_keyed_by_quantus_version_and_every_parameter():
    record = plugin_record(PluginSpec("m", "quantus:Sparseness", (("abs", False),)), METRICS)
    assert record["library"] == {"distribution": "quantus", "version": metadata.version("quantus"),
                                 "class": "Sparseness"}
    assert record["params"] == {"abs": False, "normalise": True, "softmax": False, "batch_size": 64,
                                "seed": 0}


def test_list_shows_the_source_with_quantus_version():
    from xaibench.listing import lines

    version = metadata.version("quantus")
    ending = f"any metric class of Quantus (quantus {version})"
    assert any(line.startswith("quantus:<Class>") and line.endswith(ending) for line in lines("metrics"))


def test_a_result_that_is_not_one_score_per_image_or_a_failure_is_a_one_line_run_error():
    from xaibench.errors import RunError
    from xaibench.metrics.quantus_source import per_image

    assert per_image([0.5, float("nan")], 2, "X", set()).tolist()[0] == 0.5
    with pytest.raises(RunError, match=r"'quantus:MPRT' returned a dict for 2 images, not one score per "
                                       r"image; set one of return_last_correlation to get one"):
        per_image({"layer": [1.0, 2.0]}, 2, "MPRT", {"return_last_correlation", "seed"})
    metric = build(METRICS.get("quantus:Sparseness"), {})
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(RunError, match=r"metric 'quantus:Sparseness' failed in Quantus .*: ") as err:
        metric.evaluate(tiny_net(), x, torch.tensor([0, 1]), torch.zeros(2, 7, 7), None)  # wrong map size
    assert "\n" not in str(err.value)


def test_random_logit_reads_the_models_class_count_and_keeps_the_contract():
    """RandomLogit (randomisation; re-explains for another class): num_classes left unset is the
    model's class count; the scores equal a direct call given it; xaibench check's contract holds."""
    from xaibench.check.contract import check_metric
    from xaibench.methods.saliency import Saliency
    from xaibench.metrics.quantus_source import shard_seed
    from xaibench.seeding import seeded_global_rngs

    net = tiny_net()
    images, labels, _ = tensors(4)
    maps = Saliency().attribute(net, images, labels)
    metric = build(METRICS.get("quantus:RandomLogit"), {})
    assert (metric.family, metric.higher_is_better, metric.needs_method) == ("randomisation", False, True)
    ours = metric.evaluate(net, images, labels, maps, None, method=Saliency()).scores["quantus:RandomLogit"]
    with seeded_global_rngs(shard_seed(42, images), torch.device("cpu")):  # Quantus' own seed: 42
        theirs = quantus.RandomLogit(num_classes=2, **QUIET)(
            model=net, x_batch=images.numpy(), y_batch=labels.numpy(), a_batch=maps[:, None].numpy(),
            channel_first=True, device="cpu", explain_func=saliency)
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs, dtype=float), rtol=1e-5, atol=1e-6)
    assert all(problems == [] for _, problems in check_metric("quantus:RandomLogit"))
