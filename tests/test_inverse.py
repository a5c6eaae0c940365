"""The inverse-based method (projections, the FC margin, re-identification, supported models) and
the trade-off table and plot."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaibench.config import ConfigError, parse
from xaibench.datasets.synthetic import generate
from xaibench.methods.inverse import (
    Inverse,
    UnsupportedModel,
    initial_guess,
    model_blocks,
    project,
    run_block,
    supported_archs,
)
from xaibench.models.classifier import Classifier
from xaibench.models.configs import ModelConfig, build_model
from xaibench.report.plots import tradeoff as plot_tradeoff
from xaibench.run.replay import activation_amount, tradeoff_table

from .conftest import tiny_joint, tiny_resnet

SETTINGS = {"max_steps": 200}


@pytest.fixture(scope="module")
def trained():
    """A small VGG-like classifier (conv-ReLU-pool x2, two linear layers) trained for a few
    seconds on the synthetic triangle data (colour variant, 32 px), and 16 held-out images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, labels, _, _ = generate(336, seed=0, size=32, variant="colour", radius=(4, 7),
                                        n_shapes=(1, 3), max_targets=1, simplified=False)
        x = images.float() / 255
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
            model = Classifier(net, cam_layer="net.3")
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            gen = torch.Generator().manual_seed(0)
            for _ in range(15):
                perm = torch.randperm(320, generator=gen)
                for i in range(0, 320, 40):
                    idx = perm[i:i + 40]
                    loss = F.cross_entropy(model(x[idx]), labels[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        test_x, test_y = x[320:], labels[320:]
        with torch.no_grad():
            pred = model(test_x).argmax(1)
        assert (pred == test_y).float().mean() >= 0.8, "the fixture model did not learn"
        layers = Inverse(**SETTINGS).layers(model, test_x, pred)
        yield model, test_x, pred, layers
    finally:
        torch.set_num_threads(threads)


def test_blocks_of_the_fixture_model(trained):
    model, *_ = trained
    blocks = model_blocks(model)
    assert [b.kind for b in blocks] == ["conv", "maxpool", "conv", "maxpool", "linear", "linear"]
    assert [b.name for b in blocks] == ["net.0", "net.2", "net.3", "net.5", "net.7", "net.10"]
    assert blocks[4].ops[0].kind == "flatten" and blocks[4].has_relu and not blocks[5].has_relu


def test_every_layer_satisfies_its_projection(trained):
    model, x, pred, layers = trained
    assert [layer.name for layer in layers] == ["input", "net.2", "net.3", "net.5", "net.7", "net.10"]
    norm = (x - model.mean) / model.std
    assert torch.equal(layers[0].forward, norm)
    for layer in layers:
        inv, fwd = layer.inverse, layer.forward
        assert inv.shape == fwd.shape and torch.isfinite(inv).all()
        if layer.name == "input":
            assert torch.all(inv * fwd >= 0), "the input inverse changed sign"
            assert torch.all(inv.abs() <= fwd.abs())
        else:
            assert torch.all(inv >= 0) and torch.all(inv <= fwd.clamp(min=0))
        assert inv.abs().sum() > 0, f"{layer.name}: the inverse vanished"
        torch.testing.assert_close(project(inv, fwd, is_input=layer.name == "input"), inv)


def test_fc_inverse_raises_the_target_margin(trained):
    model, x, pred, layers = trained
    last = model_blocks(model)[-1]
    top = layers[-1]

    def margin(v):
        z = run_block(last, v)[0]
        others = z.scatter(1, pred[:, None], float("-inf")).amax(1)
        return z.gather(1, pred[:, None])[:, 0] - others

    with torch.no_grad():
        init = project(initial_guess(top.forward), top.forward, is_input=False)
        before, after = margin(init), margin(top.inverse)
    assert torch.all(after >= before - 1e-5)
    assert (after - before).mean() > 0
    assert (top.steps > 0).all()


def test_input_inverse_reidentifies_the_class_above_chance(trained):
    model, x, pred, layers = trained
    chance = max((pred == c).float().mean().item() for c in (0, 1))
    rate = (layers[0].logits.argmax(1) == pred).float().mean().item()
    assert rate >= min(1.0, chance + 0.15), (rate, chance)
    # the inverse is a reduced input, not the image: much less activation than the image
    assert activation_amount(layers[0].inverse, layers[0].forward).mean() < 0.5


def test_attribute_is_the_normalised_channel_ratio_of_the_input_inverse(trained):
    model, x, pred, layers = trained
    a = Inverse(**SETTINGS).attribute(model, x, pred)
    inv, fwd = layers[0].inverse, layers[0].forward
    h = (inv.abs() / (fwd.abs() + 1e-6)).sum(1)
    expected = h / h.flatten(1).amax(1).view(-1, 1, 1)
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)
    assert a.shape == (16, 32, 32) and a.max() <= 1 and a.min() >= 0


def test_resnet_is_a_config_time_error_naming_the_supported_architectures():
    raw = {"run": {"seed": 0},
           "dataset": {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]},
           "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
           "methods": {"inverse": {}}, "metrics": {"aopc": {"patch_size": 8, "steps": 4}}}
    with pytest.raises(ConfigError, match="applies to none of the models") as err:
        parse(copy.deepcopy(raw), name="t", source="t.toml")
    for arch in supported_archs():
        assert arch in str(err.value)
    raw["models"]["vgg"] = {"arch": "vgg16", "epochs": 1}
    raw["methods"]["inverse"] = {"models": ["resnet18"]}
    with pytest.raises(ConfigError, match=r"cannot explain model 'resnet18' \(resnet18\).*vgg16, joint_"):
        parse(copy.deepcopy(raw), name="t", source="t.toml")
    del raw["methods"]["inverse"]["models"]
    parse(raw, name="t", source="t.toml")  # with a VGG16 in the run it applies to that one
    assert not Inverse().supports("joint_resnet18") and Inverse().supports("joint_xml_vgg")
    with pytest.raises(UnsupportedModel, match="joint_vgg16, joint_xml_vgg, vgg16"):  # the registry's
        Inverse(max_steps=2).attribute(tiny_resnet(), torch.rand(1, 3, 16, 16), torch.tensor([0]))
    assert supported_archs() == ["joint_vgg16", "joint_xml_vgg", "vgg16"]


@pytest.mark.parametrize("arch", ["vgg16", "joint_vgg16"])
def test_torchvision_vgg16_chains_reproduce_the_logits(arch):
    """The block chain of the real VGG16 (and its joint version, gates constant) at 32 px."""
    from xaibench.methods.joint.train import JointModelConfig

    cfg = ModelConfig(id="m", arch="vgg16") if arch == "vgg16" else JointModelConfig(id="m", arch=arch)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, 2, (32, 32)).eval()
    blocks = model_blocks(model)
    assert sum(b.kind == "conv" for b in blocks) == 13 and sum(b.kind == "linear" for b in blocks) == 3
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gate = model.explain(x) if arch.startswith("joint") else None
    h = (x - model.mean) / model.std
    with torch.no_grad():
        for block in blocks:
            h, _ = run_block(block, h, gate)
        torch.testing.assert_close(h, model(x), rtol=1e-4, atol=1e-5)


def test_joint_xml_vgg_layers_and_gates_constant():
    model = tiny_joint()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    layers = Inverse(max_steps=20).layers(model, x, torch.tensor([0, 1]))
    assert layers[0].name == "input" and len(layers) == 8 + 4 + 2  # one per conv, pool, linear block
    assert model._source.detach is False


def test_tradeoff_table_and_plot(trained, tmp_path):
    model, x, pred, layers = trained
    gen = torch.Generator().manual_seed(0)
    maps = {"random": torch.rand(x.shape[0], 32, 32, generator=gen),
            "inverse": torch.zeros(x.shape[0], 32, 32)}  # skipped: the inverse is computed in the table
    thresholds = (0.9, 0.0, 0.5, 0.25)
    table = tradeoff_table(model, x, pred, maps, inverse=Inverse(**SETTINGS), thresholds=thresholds)
    assert list(table.columns) == ["method", "point", "activation", "reidentification"]
    assert set(table["method"]) == {"inverse", "random"}
    assert table["activation"].between(0, 1).all() and table["reidentification"].between(0, 1).all()
    inv = table[table["method"] == "inverse"]
    assert list(inv["point"]) == [layer.name for layer in layers]
    rnd = table[table["method"] == "random"]
    assert list(rnd["point"]) == [0.0, 0.25, 0.5, 0.9]  # sorted
    assert rnd["activation"].is_monotonic_decreasing
    # against the layers computed in the fixture (same settings): the same re-identification
    assert inv["reidentification"].iloc[0] == (layers[0].logits.argmax(1) == pred).float().mean().item()
    path = tmp_path / "tradeoff.png"
    plotted = plot_tradeoff(table, path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(plotted.columns) == list(table.columns) and len(plotted) == len(table)
    with pytest.raises(ValueError, match="thresholds must be in"):
        tradeoff_table(model, x, pred, maps, thresholds=(1.5,))
