"""Model sources in a config: torchvision:, timm:, torchscript:, python: models are evaluated (same
accuracy as torch directly), never trained; weights, head and name errors are config-time errors;
the weights file and the factory's code are part of the model's key."""

import textwrap

import pytest
import torch

from xaibench import config
from xaibench.run.plan import plan
from xaibench.run.runner import run

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = """
[run]
device = "cpu"
batch_size = 8
bootstrap = 100
threads = 1
out = "{out}"

[dataset]
name = "synthetic"
image_size = 32
n_train = 4
n_val = 4
n_test = 8
radius = [3, 6]
n_shapes = [1, 3]

[models.m]
{model}

[methods.saliency]

[metrics.aopc]
patch_size = 16
steps = 2
"""

FACTORY = """
import torch
from torch import nn


def make(num_classes=2):
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


def make_five():
    return make(num_classes=5)


def make_vit():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=2)
"""


def parse(tmp_path, model: str, size: int = 32, **extra):
    text = BASE.format(out=tmp_path / "out", model=textwrap.dedent(model))
    text = text.replace("image_size = 32", f"image_size = {size}")
    for section, lines in extra.items():
        text += f"\n[{section}]\n{lines}\n"
    return config.parse(__import__("tomllib").loads(text), name="t", source="t.toml")


def direct_accuracy(model, cfg, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    from xaibench.datasets.synthetic import Synthetic

    ds = Synthetic(image_size=32, n_train=4, n_val=4, n_test=8, radius=(3, 6), n_shapes=(1, 3))
    splits = ds.load(cache_dir=cfg.run.out + "/probe", seed=0)
    x, y, _ = splits.test.batch(slice(None))
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture
def resnet_file(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=2)
    path = tmp_path / "resnet18.pt"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "my_models.py"
    import sys

    sys.modules.pop("my_models", None)


def test_torchvision_state_dict_is_evaluated_with_torch_accuracy(tmp_path, resnet_file):
    model, path = resnet_file
    cfg = parse(tmp_path, f'arch = "torchvision:resnet18"\nweights = "{path}"')
    result = run(cfg, progress=False, write_outputs=False)
    assert result.leaderboard["accuracy"].iloc[0] == pytest.approx(direct_accuracy(model, cfg))
    record = plan(cfg).get("m").record["model"]["settings"]
    assert record["weights"]["sha256"] and "epochs" not in record
    # a changed weight is a new key
    model.fc.bias.data += 1
    torch.save(model.state_dict(), path)
    import xaibench.keys

    xaibench.keys._file_digest.cache_clear()
    assert plan(cfg).get("m").key != result.plan.get("m").key


def test_state_dict_on_a_folder_dataset(tmp_path):
    """A folder dataset counts its class folders at config time: a state_dict with that many
    classes is evaluated (same accuracy as torch), one with another head is a config-time error."""
    from torchvision.models import resnet18

    from tests.datafiles import write_folder

    write_folder(tmp_path / "mine", classes={"cat": 4, "dog": 4, "bird": 4})
    torch.manual_seed(0)
    model = resnet18(num_classes=3)
    torch.save(model.state_dict(), tmp_path / "r.pt")
    model_lines = f'arch = "torchvision:resnet18"\nweights = "{tmp_path / "r.pt"}"'
    text = BASE.format(out=tmp_path / "out", model=model_lines)
    text = text.replace('name = "synthetic"', f'name = "folder"\nroot = "{tmp_path / "mine"}"')
    text = text.replace("n_train = 4\nn_val = 4\nn_test = 8\nradius = [3, 6]\nn_shapes = [1, 3]\n", "")
    cfg = config.parse(__import__("tomllib").loads(text), name="t", source="t.toml")
    result = run(cfg, progress=False, write_outputs=False)
    from xaibench.run.execute import load_data

    x, y, _ = load_data(result.plan)[0].test.batch(slice(None))
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = (model.eval()((x - mean) / std).argmax(1) == y).float().mean().item()
    assert result.leaderboard["accuracy"].iloc[0] == pytest.approx(direct)
    four = resnet18(num_classes=4)  # a head the folder's 3 classes do not fit: a config-time error
    torch.save(four.state_dict(), tmp_path / "r.pt")
    with pytest.raises(config.ConfigError, match=r"head has 4 classes .*, but dataset 'folder' has 3"):
        config.parse(__import__("tomllib").loads(text), name="t", source="t.toml")


def test_head_from_the_file_when_the_dataset_cannot_count_its_classes_before_reading(resnet_file):
    from xaibench.models.sources import TorchvisionModel

    _, path = resnet_file  # 2 classes; without a class count the file's head decides
    model = TorchvisionModel(id="m", arch="torchvision:resnet18", weights=str(path)).classifier(None, "d")
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_python_factory_is_evaluated_and_keyed_by_its_code(tmp_path, factory_module):
    from my_models import make

    cfg = parse(tmp_path, 'arch = "python:my_models:make"')
    result = run(cfg, progress=False, write_outputs=False)
    assert result.leaderboard["accuracy"].iloc[0] == pytest.approx(direct_accuracy(make(), cfg))
    factory = plan(cfg).get("m").record["model"]["settings"]["factory"]
    assert factory["module"] == "my_models" and factory["code"]


def test_torchscript_file_is_evaluated(tmp_path, factory_module):
    from my_models import make

    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(make()), path)
    cfg = parse(tmp_path, f'arch = "torchscript:{path}"\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]')
    result = run(cfg, progress=False, write_outputs=False)
    expected = direct_accuracy(make(), cfg, (0.5,) * 3, (0.25,) * 3)
    assert result.leaderboard["accuracy"].iloc[0] == pytest.approx(expected)
    assert plan(cfg).get("m").record["model"]["settings"]["file"]["sha256"]


def test_head_of_another_class_count_names_both_numbers(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "imagenet.pt"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(config.ConfigError, match=r"\[models.m\] weights: the model's head has 1000 "
                                                 r"classes .*dataset 'synthetic' has 2 classes"):
        parse(tmp_path, f'arch = "torchvision:resnet18"\nweights = "{path}"')


def test_factory_head_of_another_class_count(tmp_path, factory_module):
    with pytest.raises(config.ConfigError, match="head has 5 classes, but dataset 'synthetic' has 2"):
        parse(tmp_path, 'arch = "python:my_models:make_five"')


def test_state_dict_keys_that_do_not_match_name_the_first_missing_and_unexpected(tmp_path, resnet_file):
    model, _ = resnet_file
    state = model.state_dict()
    state["head.weight"] = state.pop("fc.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(config.ConfigError) as err:
        parse(tmp_path, f'arch = "torchvision:resnet18"\nweights = "{path}"')
    assert "the first 'fc.weight'" in str(err.value) and "the first 'head.weight'" in str(err.value)


@pytest.mark.parametrize(("arch", "message"), [
    ("tv:resnet18", "unknown architecture or model source 'tv'; known: given, joint_resnet18"),
    ("torchvision:resnet19", "torchvision has no model 'resnet19'; known models: alexnet"),
    ("timm:vit_tinyy_patch16_224", "timm has no model 'vit_tinyy_patch16_224'"),
    ("python:no_such_module:make", "cannot import module 'no_such_module'"),
    ("torchscript:missing.pt", "TorchScript file missing.pt not found"),
])
def test_unknown_names_list_the_known_ones(tmp_path, arch, message):
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        parse(tmp_path, f'arch = "{arch}"')


def test_stem_is_not_a_key_of_a_loaded_model(tmp_path):
    with pytest.raises(config.ConfigError, match="stem: unknown key; allowed keys: arch, batch_size"):
        parse(tmp_path, 'arch = "torchvision:resnet18"\nstem = "small"')


def test_methods_that_cannot_explain_the_family_are_config_time_errors(tmp_path, factory_module):
    with pytest.raises(config.ConfigError, match=r"\[methods.deep_taylor\] method 'deep_taylor' applies "
                                                 r"to none of the models \(m: timm:vit_"):
        parse(tmp_path, 'arch = "timm:vit_tiny_patch16_224"', 224, **{"methods.deep_taylor": ""})
    # a factory's family is known once it is built (still before any data is read)
    with pytest.raises(config.ConfigError, match="deep_taylor.*applies to none of the models"):
        parse(tmp_path, 'arch = "python:my_models:make_vit"', **{"methods.deep_taylor": ""})
