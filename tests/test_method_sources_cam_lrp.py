"""Method sources ``grad-cam:<Class>`` and ``zennit:<composite>``: through xaibench (config -> built
method -> attribute) each equals a direct call of the library on the same model, inputs and target;
the contract holds; config errors are one line.

pytorch-grad-cam returns, per image, the CAM after ReLU, min-max scaled to [0, 1]
((cam - min) / (max + 1e-7)) at the layer's resolution and resized to the image with OpenCV
(``cv2.resize``, bilinear): xaibench's map is that array, as float32 [B, H, W]."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from xaibench.check.contract import method_problems
from xaibench.config import ConfigError, PluginSpec, parse
from xaibench.methods.layers import model_family
from xaibench.params import build
from xaibench.registry import METHODS
from xaibench.run.plan import plugin_record

from .conftest import tiny_resnet, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {
    "run": {"seed": 0},
    "dataset": {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]},
    "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
    "methods": {},
    "metrics": {"aopc": {"patch_size": 8, "steps": 4}},
}

# grad-cam classes: (config keys, what the direct call sets on the CAM object); ScoreCAM reads
# batch_size as an attribute, and runs one pass per channel: on the ResNet it explains layer2 (128
# channels, 8x8), not the default layer4 (512 channels)
CAMS = {
    "GradCAMPlusPlus": ({}, {}),
    "ScoreCAM": ({"batch_size": 128}, {"batch_size": 128}),
    "LayerCAM": ({}, {}),
    "XGradCAM": ({}, {}),
    "EigenCAM": ({}, {}),
}
LAYERS = {"ScoreCAM": "layer2"}


def cam_params(name, family):
    """The config keys of grad-cam class ``name`` for a model of ``family``."""
    layer = {"layer": f"net.{LAYERS[name]}"} if name in LAYERS and family == "cnn" else {}
    return {**CAMS[name][0], **layer}


def configured(plugin, params):
    """The method a config builds for ``[methods.m] plugin = <plugin>`` with ``params``."""
    raw = copy.deepcopy(BASE)
    raw["methods"]["m"] = {"plugin": plugin, **params}
    return parse(raw, name="t", source="t.toml").methods[0].instance


def model_and_data(family):
    """A tiny ResNet on 32-px images (layer4 is 2x2) or a tiny ViT on 16-px images (4x4 tokens)."""
    size = 32 if family == "cnn" else 16
    model = tiny_resnet() if family == "cnn" else tiny_vit(img_size=16, patch_size=4)
    gen = torch.Generator().manual_seed(5)
    return model.eval(), torch.rand(2, 3, size, size, generator=gen), torch.tensor([0, 1])


def direct_cam(name, model, x, y, attributes):
    """pytorch-grad-cam called as its README does: the target layer by hand (ResNet: layer4; ViT: the
    last block's norm1, class token dropped and the tokens reshaped to their 4x4 grid)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if model_family(model) == "vit":
        layer = model.net.blocks[-1].norm1

        def reshape(t):
            return t[:, 1:, :].reshape(t.size(0), 4, 4, t.size(2)).transpose(2, 3).transpose(1, 2)
    else:
        layer, reshape = getattr(model.net, LAYERS.get(name, "layer4")), None
    cam = getattr(pytorch_grad_cam, name)(model=model, target_layers=[layer], reshape_transform=reshape)
    for key, value in attributes.items():
        setattr(cam, key, value)
    try:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in y]))
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("name", sorted(CAMS))
@pytest.mark.parametrize("family", ["cnn", "vit"])
def test_grad_cam_equals_a_direct_call(name, family):
    method = configured(f"grad-cam:{name}", cam_params(name, family))
    model, x, y = model_and_data(family)
    ours = method.attribute(model, x, y)
    theirs = direct_cam(name, model, x, y, CAMS[name][1])
    assert ours.shape == x.shape[:1] + x.shape[2:] and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # the library's per-image scaling: each map in [0, 1] (all zero where the CAM is nowhere positive)
    assert ours.min() >= 0 and ours.max() <= 1 and ours.sum() > 0


def test_grad_cam_layer_key():
    model, x, y = model_and_data("cnn")
    ours = configured("grad-cam:XGradCAM", {"layer": "net.layer3"}).attribute(model, x, y)
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = pytorch_grad_cam.XGradCAM(model=model, target_layers=[model.net.layer3])
    theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    cam.activations_and_grads.release()
    torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match=r"layer: layer 'net\.layer9' not found"):
        configured("grad-cam:XGradCAM", {"layer": "net.layer9"})


def lrp_direct(model, x, y, **keywords):
    """zennit called by hand on the backbone: EpsilonGammaBox with zennit's own ResNetCanonizer, the
    box [(0 - mean) / std, (1 - mean) / std], on the normalised images, relevance from the target
    logit, summed over channels."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox
    from zennit.torchvision import ResNetCanonizer

    box = {"low": (0 - model.mean) / model.std, "high": (1 - model.mean) / model.std}
    composite = EpsilonGammaBox(**{**box, **keywords}, canonizers=[ResNetCanonizer()])
    with Gradient(model.net, composite) as attributor:
        _, rel = attributor((x - model.mean) / model.std,
                            lambda out: out * torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype))
    return rel.sum(1)


@pytest.mark.parametrize("plugin", ["zennit:EpsilonGammaBox", "zennit:epsilon_gamma_box"])
def test_zennit_composite_equals_a_direct_call(plugin):
    model, x, y = model_and_data("cnn")
    ours = configured(plugin, {}).attribute(model, x, y)
    theirs = lrp_direct(model, x, y)
    assert ours.shape == (2, 32, 32) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6 * theirs.abs().max().item())
    assert ours.abs().sum() > 0


def test_zennit_keywords_reach_the_composite():
    model, x, y = model_and_data("cnn")
    params = {"gamma": 0.5, "epsilon": 0.01, "low": 0.1}
    ours = configured("zennit:epsilon_gamma_box", params).attribute(model, x, y)
    low = (0.1 - model.mean) / model.std
    theirs = lrp_direct(model, x, y, gamma=0.5, epsilon=0.01, low=low)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6 * theirs.abs().max().item())
    assert not torch.allclose(ours, lrp_direct(model, x, y), rtol=1e-3)
    assert not configured("zennit:epsilon_gamma_box", {}).supports_family("vit")


CONTRACT = [("grad-cam:" + name, cam_params(name, family), family)
            for name in sorted(CAMS) for family in ("cnn", "vit")]
CONTRACT.append(("zennit:EpsilonGammaBox", {}, "cnn"))


@pytest.mark.parametrize(("plugin", "params", "family"), CONTRACT)
def test_sourced_method_keeps_the_contract(plugin, params, family):
    """Model unchanged (train mode, a frozen parameter, a parameter's .grad kept: pytorch-grad-cam
    calls zero_grad and backward), shapes, determinism, the global RNG untouched
    (xaibench.check.contract), and a batch explained as image by image."""
    cls = METHODS.get(plugin)
    model, x, y = model_and_data(family)
    model.train()
    params_ = list(model.parameters())
    params_[0].requires_grad_(False)
    params_[-1].grad = torch.ones_like(params_[-1])
    maps, problems = method_problems(lambda: build(cls, params), model, x, y)
    assert not problems, "; ".join(problems)
    assert torch.equal(params_[-1].grad, torch.ones_like(params_[-1]))
    method = build(cls, params)
    one_by_one = torch.cat([method.attribute(model, x[i:i + 1], y[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(maps, one_by_one, rtol=1e-5, atol=1e-5 * maps.abs().max().item())


@pytest.mark.parametrize(("plugin", "key", "message"), [
    ("grad-cam:GradCam", None, r"unknown method 'grad-cam:GradCam'.*did you mean GradCAM"),
    ("grad-cam:ScoreCAM", "batchsize", r"batchsize: unknown key; allowed keys: aug_smooth, batch_size, "
                                       r"eigen_smooth, layer"),
    ("zennit:epsilon_gama_box", None, r"unknown method 'zennit:epsilon_gama_box'.*did you mean "
                                      r"epsilon_gamma_box"),
    ("zennit:EpsilonGammaBox", "gama", r"gama: unknown key; allowed keys: epsilon, gamma, high, low, "
                                       r"stabilizer, zero_params"),
])
def test_config_errors_are_one_line(plugin, key, message):
    raw = copy.deepcopy(BASE)
    raw["methods"]["m"] = {"plugin": plugin, **({key: 1} if key else {})}
    with pytest.raises(ConfigError, match=r"t.toml: \[methods.m\] " + message) as err:
        parse(raw, name="t", source="t.toml")
    assert "\n" not in str(err.value)


def test_wrong_values_are_config_errors():
    raw = copy.deepcopy(BASE)
    raw["methods"]["m"] = {"plugin": "grad-cam:GradCAM", "aug_smooth": "yes"}
    with pytest.raises(ConfigError, match=r"aug_smooth: expected bool, got 'yes'"):
        parse(raw, name="t", source="t.toml")
    raw["methods"]["m"] = {"plugin": "zennit:epsilon_gamma_box", "low": 0.5, "high": 0.5}
    with pytest.raises(ConfigError, match=r"low: .*must be below its high"):
        parse(raw, name="t", source="t.toml")


def test_unknown_names_are_reported_before_torch_is_loaded():
    code = textwrap.dedent("""
        import sys
        from xaibench.cli import load_torch_lazily
        load_torch_lazily()
        from xaibench.registry import METHODS, RegistryError
        for name in ("grad-cam:GradCam", "zennit:epsilon_gama_box"):
            try:
                METHODS.check(name)
            except RegistryError as exc:
                print(str(exc).split(":")[0])
        METHODS.check("grad-cam:EigenCAM")
        METHODS.check("zennit:EpsilonPlus")
        print("torch._C" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["unknown method 'grad-cam", "unknown method 'zennit", "False"]


def test_list_shows_both_sources_with_their_versions():
    from importlib import metadata

    from xaibench.listing import lines

    listed = {line.split()[0]: line for line in lines("methods")}
    assert listed["grad-cam:<Class>"].endswith(f"(grad-cam {metadata.version('grad-cam')})")
    assert listed["zennit:<composite>"].endswith(f"(zennit {metadata.version('zennit')})")


def test_cells_are_keyed_by_the_librarys_version_and_every_parameter():
    from importlib import metadata

    record = plugin_record(PluginSpec("m", "grad-cam:ScoreCAM", (("batch_size", 8),)), METHODS)
    assert record["library"] == {"distribution": "grad-cam", "version": metadata.version("grad-cam"),
                                 "class": "ScoreCAM"}
    assert record["params"] == {"layer": None, "aug_smooth": False, "eigen_smooth": False, "batch_size": 8}
    record = plugin_record(PluginSpec("m", "zennit:epsilon_gamma_box"), METHODS)
    assert record["library"]["class"] == "EpsilonGammaBox"
    assert record["params"]["gamma"] == 0.25 and record["params"]["low"] == 0.0
