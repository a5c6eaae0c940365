"""Method sources: ``captum:<Class>`` through xaibench (config -> built method -> attribute) equals a
direct call of captum on the same model, inputs, target and seed, reduced the same way; the
contract holds; config errors are one line; the six captum built-ins are configurations of it."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from xaibench.check.contract import method_problems
from xaibench.config import ConfigError, PluginSpec, parse
from xaibench.methods.captum_source import CaptumMethod, baseline_images, feature_groups
from xaibench.methods.layers import model_family
from xaibench.params import build
from xaibench.registry import METHODS
from xaibench.run.plan import plugin_record
from xaibench.seeding import image_seed, seeded_global_rngs

from .conftest import tiny_net, tiny_resnet, tiny_vit

# captum's DeepLift needs every nn.ReLU module used once; a torchvision ResNet re-uses its blocks'
# ReLU, and captum refuses it (directly too): DeepLift and DeepLiftShap run on the tiny CNN
REUSED_RELU = {"DeepLift", "DeepLiftShap"}


def cnn(name):
    return tiny_net() if name in REUSED_RELU else tiny_resnet()

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {
    "run": {"seed": 0},
    "dataset": {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]},
    "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
    "methods": {},
    "metrics": {"aopc": {"patch_size": 8, "steps": 4}},
}

# (class, config keys (cheap), the captum keywords of the direct call, per image seeded?)
CASES = {
    "DeepLift": ({}, {}, False),
    "DeepLiftShap": ({}, {}, True),
    "GradientShap": ({"n_samples": 3, "stdevs": 0.1}, {"n_samples": 3, "stdevs": 0.1}, True),
    "Lime": ({"n_samples": 12, "feature_size": 4}, {"n_samples": 12, "perturbations_per_eval": 16}, True),
    "KernelShap": ({"n_samples": 12, "feature_size": 4},
                   {"n_samples": 12, "perturbations_per_eval": 16}, True),
    "FeatureAblation": ({"feature_size": 4}, {"perturbations_per_eval": 16}, False),
}


def configured(name, params):
    """The method a config builds for ``[methods.m] plugin = "captum:<name>"`` with ``params``."""
    raw = copy.deepcopy(BASE)
    raw["methods"]["m"] = {"plugin": f"captum:{name}", **params}
    cfg = parse(raw, name="t", source="t.toml")
    return cfg.methods[0].instance


def direct(name, model, x, y, keywords, seeded, seed=0):
    """captum called by hand: the baselines xaibench names by default, image by image under the
    seed where the class draws random numbers or takes a distribution of baselines, signed sum."""
    import captum.attr

    cls = getattr(captum.attr, name)

    def one(xi, yi):
        kw = dict(keywords)
        if name in ("DeepLiftShap", "GradientShap"):
            kw["baselines"] = torch.cat([torch.zeros_like(xi), torch.ones_like(xi)])
        else:
            kw["baselines"] = torch.zeros_like(xi)
        if name in ("Lime", "KernelShap", "FeatureAblation"):
            kw["feature_mask"] = feature_groups(xi, 4)
        return cls(model).attribute(xi, target=yi, **kw).detach().sum(1)

    with torch.no_grad() if False else torch.enable_grad():
        if not seeded:
            return one(x, y)
        maps = []
        for i in range(x.shape[0]):
            with seeded_global_rngs(image_seed(seed, x[i]), x.device):
                maps.append(one(x[i:i + 1], y[i:i + 1]))
        return torch.cat(maps)


def data(size=16):
    gen = torch.Generator().manual_seed(5)
    return torch.rand(2, 3, size, size, generator=gen), torch.tensor([0, 1])


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("family", ["cnn", "vit"])
def test_sourced_method_equals_a_direct_captum_call(name, family):
    params, keywords, seeded = CASES[name]
    method = configured(name, params)
    model = cnn(name) if family == "cnn" else tiny_vit(img_size=16, patch_size=4)
    if not method.supports_family(model_family(model)):
        assert name in ("DeepLift", "DeepLiftShap") and family == "vit"
        pytest.skip(f"captum's {name} changes ReLU backward passes: CNNs only")
    x, y = data()
    ours = method.attribute(model.eval(), x, y)
    theirs = direct(name, model.eval(), x, y, keywords, seeded)
    assert ours.shape == (2, 16, 16) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-6, atol=1e-6 * theirs.abs().max().item())
    assert ours.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_sourced_method_keeps_the_contract(name):
    """Model unchanged (train mode, a frozen parameter), shapes, determinism under the seed, the
    global RNG untouched (xaibench.check.contract), and a batch explained as image by image."""
    params = CASES[name][0]
    cls = METHODS.get(f"captum:{name}")
    model = cnn(name).train()
    next(model.parameters()).requires_grad_(False)
    x, y = data()
    maps, problems = method_problems(lambda: build(cls, params), model, x, y)
    assert not problems, "; ".join(problems)
    method = build(cls, params)
    one_by_one = torch.cat([method.attribute(model, x[i:i + 1], y[i:i + 1]) for i in range(2)])
    # a batch in one forward pass rounds differently from one image at a time (FeatureAblation)
    torch.testing.assert_close(maps, one_by_one, rtol=1e-5, atol=1e-5 * maps.abs().max().item())


def test_the_seed_changes_a_stochastic_method():
    model, (x, y) = tiny_resnet(), data()
    a = configured("GradientShap", {"n_samples": 3, "stdevs": 0.1}).attribute(model, x, y)
    b = configured("GradientShap", {"n_samples": 3, "stdevs": 0.1, "seed": 1}).attribute(model, x, y)
    assert not torch.equal(a, b)


def test_layer_attribution_is_upsampled_to_the_image():
    from captum.attr import LayerAttribution, LayerConductance

    model, (x, y) = tiny_resnet().eval(), data()
    ours = configured("LayerConductance", {"n_steps": 4, "layer": "net.layer4"}).attribute(model, x, y)
    attr = LayerConductance(model, model.net.layer4).attribute(x, target=y, n_steps=4, internal_batch_size=64)
    ref = LayerAttribution.interpolate(attr.sum(1, keepdim=True), (16, 16), interpolate_mode="bilinear")[:, 0]
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)


def test_named_baselines():
    x = data()[0]
    assert torch.equal(baseline_images(x, "white"), torch.ones_like(x))
    assert torch.equal(baseline_images(x, 0.25), torch.full_like(x, 0.25))
    noise = baseline_images(x, "uniform", seed=3)
    assert torch.equal(noise[1:], baseline_images(x[1:], "uniform", seed=3))  # per image
    assert baseline_images(x, "blur").shape == x.shape


def test_config_errors_are_one_line():
    raw = copy.deepcopy(BASE)
    raw["methods"]["m"] = {"plugin": "captum:DeepLit"}
    with pytest.raises(ConfigError, match=r"t.toml: \[methods.m\] unknown method 'captum:DeepLit'.*"
                                          r"did you mean DeepLift") as err:
        parse(raw, name="t", source="t.toml")
    assert "\n" not in str(err.value)
    raw["methods"]["m"] = {"plugin": "captum:DeepLift", "epss": 1.0}
    with pytest.raises(ConfigError, match=r"\[methods.m\] epss: unknown key; allowed keys: baseline, eps, "
                                          r"multiply_by_inputs, seed") as err:
        parse(raw, name="t", source="t.toml")
    assert "\n" not in str(err.value)
    raw["methods"]["m"] = {"plugin": "captum:IntegratedGradients", "n_steps": "many"}
    with pytest.raises(ConfigError, match=r"n_steps: expected int, got 'many'"):
        parse(raw, name="t", source="t.toml")
    raw["methods"]["m"] = {"plugin": "captum:NeuronGradient"}
    with pytest.raises(ConfigError, match=r"unknown method 'captum:NeuronGradient'"):
        parse(raw, name="t", source="t.toml")


def test_an_unknown_class_is_reported_before_torch_is_loaded():
    code = textwrap.dedent("""
        import sys
        from xaibench.cli import load_torch_lazily
        load_torch_lazily()
        from xaibench.registry import METHODS, RegistryError
        try:
            METHODS.check("captum:DeepLit")
        except RegistryError as exc:
            print(str(exc).splitlines()[0][:40])
        print("torch._C" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["unknown method 'captum:DeepLit': captum.", "False"]


def test_cells_are_keyed_by_captums_version_and_every_parameter():
    from importlib import metadata

    record = plugin_record(PluginSpec("m", "captum:DeepLift", (("eps", 1e-6),)), METHODS)
    assert record["library"] == {"distribution": "captum", "version": metadata.version("captum"),
                                 "class": "DeepLift"}
    assert record["params"] == {"multiply_by_inputs": True, "eps": 1e-6, "baseline": "black", "seed": 0}
    builtin = plugin_record(PluginSpec("ig", "integrated_gradients"), METHODS)
    assert builtin["library"]["class"] == "IntegratedGradients"


def test_list_shows_the_source_with_captums_version():
    from importlib import metadata

    from xaibench.listing import lines

    assert (f"captum:<Class>  any attribution class of captum.attr (captum {metadata.version('captum')})"
            in [" ".join(line.split()).replace(">  ", ">  ") for line in lines("methods")]
            or any(line.startswith("captum:<Class>")
                   and line.endswith(f"(captum {metadata.version('captum')})") for line in lines("methods")))


def test_check_method_runs_the_contract_on_a_source():
    from xaibench.check.contract import check_method

    results = check_method("captum:InputXGradient")
    assert results and all(not p or p[0].startswith("skipped") for _, p in results)


# -- the built-ins are configurations of the source: same maps as the captum calls they replaced ----


def old_calls(model, x, y):
    """The captum calls the hand-written wrappers made, verbatim."""
    from captum.attr import Deconvolution, GuidedBackprop, InputXGradient, IntegratedGradients, NoiseTunnel
    from captum.attr import Saliency as S

    from xaibench.seeding import seeded_global_rng

    xr = x.detach().requires_grad_()
    smooth = []
    for i in range(x.shape[0]):
        with seeded_global_rng(image_seed(0, x[i]), x.device):
            smooth.append(NoiseTunnel(S(model)).attribute(
                x[i:i + 1], nt_type="smoothgrad", nt_samples=4, nt_samples_batch_size=3, stdevs=0.15,
                target=y[i:i + 1], abs=True).detach().sum(1))
    return {
        ("saliency", ()): S(model).attribute(xr, target=y, abs=True).detach().amax(1),
        ("input_x_gradient", ()): InputXGradient(model).attribute(xr, target=y).detach().sum(1),
        ("integrated_gradients", (("baseline", "mean"), ("n_steps", 6))):
        IntegratedGradients(model).attribute(
            x, baselines=x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous(), target=y, n_steps=6,
            method="gausslegendre", internal_batch_size=64).detach().sum(1),
        ("smoothgrad", (("internal_batch_size", 3), ("n_samples", 4))): torch.cat(smooth),
        ("guided_backprop", ()): GuidedBackprop(model).attribute(xr, target=y).detach().abs().sum(1),
        ("deconvolution", ()): Deconvolution(model).attribute(xr, target=y).detach().abs().sum(1),
    }


def test_builtins_are_captum_configurations_with_unchanged_maps():
    model, (x, y) = tiny_resnet().eval(), data()
    for (name, params), expected in old_calls(model, x, y).items():
        cls = METHODS.get(name)
        assert issubclass(cls, CaptumMethod)
        ours = build(cls, dict(params)).attribute(model, x, y)
        assert torch.equal(ours, expected.float()), name
