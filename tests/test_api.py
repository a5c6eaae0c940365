"""The Python API: xaibench.evaluate on any nn.Module (torchvision ResNet18 with mean/std, a timm
ViT), tensors or a DataLoader, through the same plan/execute/write path as `xaibench run`."""

import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import xaibench
from xaibench.errors import ConfigError

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AOPC = {"aopc": {"patch_size": 8, "steps": 2}}


def data(n=6, size=32, classes=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen), torch.arange(n) % classes


def direct_accuracy(model, images, labels, mean=None, std=None):
    x = images
    if mean is not None:
        x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == labels).float().mean().item()


def test_import_xaibench_does_not_import_torch():
    code = "import sys, xaibench; assert 'torch' not in sys.modules; assert callable(xaibench.evaluate)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_resnet18_with_mean_std_accuracy_equals_torch(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=3).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = data()
    board = xaibench.evaluate(model, (images, labels, None), methods=["gradcam", "random"], metrics=AOPC,
                              mean=MEAN, std=STD, device="cpu", batch_size=4, progress=False, out=tmp_path)
    assert sorted(board["method"]) == ["gradcam", "random"]
    assert board["accuracy"].iloc[0] == pytest.approx(direct_accuracy(model, images, labels, MEAN, STD))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the user's model changed"
    run_dir = next((tmp_path / "memory").glob("evaluate-*"))
    for name in ("leaderboard.csv", "report.md", "manifest.json", "scores.csv"):
        assert (run_dir / name).is_file()
    import pandas as pd

    assert list(pd.read_csv(run_dir / "leaderboard.csv").columns) == list(board.columns)
    again = xaibench.evaluate(model, (images, labels, None), methods=["gradcam", "random"], metrics=AOPC,
                              mean=MEAN, std=STD, device="cpu", batch_size=4, progress=False, out=tmp_path)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), board.reset_index(drop=True))


def test_evaluate_timm_vit_and_a_dataloader():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    images, labels = data()
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    board = xaibench.evaluate(model, loader, methods={"gradcam": {}, "attention_rollout": {}}, metrics=AOPC,
                              device="cpu", batch_size=4, progress=False)
    assert sorted(board["method"]) == ["attention_rollout", "gradcam"]
    assert board["accuracy"].iloc[0] == pytest.approx(direct_accuracy(model, images, labels))
    assert (board["n"] == 6).all()


def test_a_dataset_of_pairs_and_masks_for_localisation_metrics():
    images, labels = data(n=4, size=16, classes=2)
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    pairs = [(images[i], int(labels[i]), masks[i]) for i in range(4)]
    for dataset in (pairs, TensorDataset(images, labels, masks)):
        board = xaibench.evaluate(tiny_net(), dataset, methods=["saliency"], metrics=["relevance_mass"],
                                  device="cpu", progress=False)
        assert "relevance_mass_mean" in board.columns and board["n"].iloc[0] == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"methods": ["gradcm"]}, "xaibench.evaluate: [methods.gradcm] unknown method 'gradcm'; known methods:"),
    ({"methods": {"gradcam": {"layr": "net.2"}}},
     "xaibench.evaluate: [methods.gradcam] layr: unknown key; allowed keys:"),
    ({"methods": {"occlusion": {"window": "big"}}},
     "xaibench.evaluate: [methods.occlusion] window: expected int"),
    ({"metrics": ["relevance_mass"]}, "needs ground-truth masks"),
])
def test_bad_methods_and_metrics_are_config_style_one_line_errors(kwargs, message):
    images, labels = data(n=2, size=16, classes=2)
    args = {"methods": ["saliency"], "metrics": ["aopc"], **kwargs}
    with pytest.raises(ConfigError) as err:
        xaibench.evaluate(tiny_net(), (images, labels, None), progress=False, **args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_data_is_a_clear_error():
    images, labels = data(n=2, size=16, classes=2)
    with pytest.raises(ConfigError, match=r"images must be in \[0, 1\]"):
        xaibench.evaluate(tiny_net(), (images * 2, labels, None), methods=["saliency"], metrics=["aopc"])
    with pytest.raises(ConfigError, match="labels run from 0 to 5, but the model has 2 outputs"):
        xaibench.evaluate(tiny_net(), (images, torch.tensor([0, 5]), None), methods=["saliency"],
                          metrics=["aopc"])


def test_explain_one_method():
    images, labels = data(n=3, size=16, classes=2)
    model = tiny_net()
    maps = xaibench.explain(model, images, labels, "gradcam", layer="net.2")
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    with pytest.raises(ConfigError, match=r"xaibench.explain: \[methods.gradcam\] layr: unknown key"):
        xaibench.explain(model, images, labels, "gradcam", layr="net.2")
    with pytest.raises(ConfigError, match="cannot explain this model"):
        xaibench.explain(model, images, labels, "attention_rollout")


def test_the_python_only_plugins_are_config_errors_in_a_file(tmp_path):
    """The memory dataset and the given model exist only as objects handed over by
    xaibench.evaluate (nothing is kept in the process): a config file naming them fails at once."""
    from xaibench.config import parse
    from xaibench.errors import ConfigError

    base = {"run": {"out": str(tmp_path), "device": "cpu"}, "methods": {"saliency": {}},
            "metrics": {"aopc": {}}}
    with pytest.raises(ConfigError, match=r"\[dataset\] key: the memory dataset holds tensors given to "
                                          r"xaibench.evaluate from Python"):
        parse({**base, "dataset": {"name": "memory", "key": "abc"}, "models": {"m": {}}}, name="t",
              source="t.toml")
    with pytest.raises(ConfigError, match=r"\[models.m\] arch: 'given' models come from xaibench.evaluate"):
        data = {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]}
        parse({**base, "dataset": data, "models": {"m": {"arch": "given:Net", "key": "abc"}}}, name="t",
              source="t.toml")
