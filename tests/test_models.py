import pytest
import torch

from xaibench.datasets.synthetic import Synthetic
from xaibench.models.configs import ModelConfig, build_model
from xaibench.models.training import obtain_model, recalibrate_batchnorm


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    ds = Synthetic(image_size=32, n_train=16, n_val=8, n_test=8, radius=(3, 6), n_shapes=(1, 3))
    return ds.load(cache_dir=tmp_path_factory.mktemp("data"), seed=0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "vgg16"])
def test_architectures_adapt_to_classes_and_size(arch):
    model = build_model(ModelConfig(id="m", arch=arch), num_classes=5, image_size=(32, 32)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert dict(model.named_modules())[model.cam_layer] is not None


def test_batchnorm_recalibration_of_a_plain_model(splits):
    torch.manual_seed(0)
    model = build_model(ModelConfig(id="m", arch="resnet18"), num_classes=2, image_size=(32, 32))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:  # stale statistics, as after fast-moving training steps
        m.running_mean.fill_(5.0)
        m.running_var.fill_(9.0)
    images, _, _ = splits.train.batch(slice(None))
    with torch.no_grad():
        stale_logits = model.eval()(images)
    model.train()
    recalibrate_batchnorm(model, model, splits.train, batch_size=len(splits.train), batches=1,
                          device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert all(m.momentum == 0.1 for m in norms)  # momentum restored
    with torch.no_grad():  # one batch holding the whole split: eval mode = train mode's statistics
        train_logits = model(images)
        eval_logits = model.eval()(images)
    # up to the unbiased variance of the running statistics (n / (n - 1) on 1x1 maps of 16 images),
    # which compounds over the layers: 2-3.5% of the logits' scale over 12 initial weights
    scale = train_logits.abs().max()
    assert (eval_logits - train_logits).abs().max() < 0.05 * scale
    assert (stale_logits - train_logits).abs().max() > 0.5 * scale
    stale = build_model(ModelConfig(id="m", arch="resnet18"), num_classes=2, image_size=(32, 32))
    stale.load_state_dict(model.state_dict())
    stale.eval()
    recalibrate_batchnorm(stale, stale, splits.train, batch_size=4, batches=2,  # eval mode: unchanged
                          device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(stale.state_dict().values(), model.state_dict().values()))


def test_checkpoint_cache(tmp_path, splits):
    cfg = ModelConfig(id="r", arch="resnet18", epochs=1, batch_size=8)
    kw = dict(path=tmp_path / "r.pt", context_key="d", device=torch.device("cpu"), seed=0, progress=False)
    t1 = obtain_model(cfg, splits, **kw)
    assert t1.computed and 0 <= t1.test_accuracy <= 1 and len(t1.history) == 1
    t2 = obtain_model(cfg, splits, **kw)  # the cell's file exists: read, not trained
    assert not t2.computed and t2.test_accuracy == t1.test_accuracy and t2.history == t1.history
    pairs = zip(t1.model.state_dict().values(), t2.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)


def test_training_is_seeded_and_leaves_global_rng_alone(tmp_path, splits):
    cfg = ModelConfig(id="r", arch="resnet18", epochs=1, batch_size=8)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    kw = dict(context_key="d", device=torch.device("cpu"), seed=0, progress=False)
    a = obtain_model(cfg, splits, path=tmp_path / "a.pt", **kw).model
    assert torch.equal(torch.get_rng_state(), state)
    b = obtain_model(cfg, splits, path=tmp_path / "b.pt", **kw).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pretrained_weights_read_from_disk(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = ModelConfig(id="m", arch="resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError, match="never downloads.*set pretrained = false"):
        build_model(cfg, num_classes=2, image_size=(32, 32))
    fake = resnet18(weights=None).state_dict()
    path = tmp_path / "hub" / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    model = build_model(cfg, num_classes=2, image_size=(32, 32))
    assert torch.equal(model.net.conv1.weight, fake["conv1.weight"])
    assert model.net.fc.out_features == 2
    # an explicit path works too
    other = tmp_path / "w.pth"
    torch.save(fake, other)
    m2 = build_model(ModelConfig(id="m", arch="resnet18", pretrained=True, weights_path=str(other)),
                     num_classes=3, image_size=(32, 32))
    assert torch.equal(m2.net.conv1.weight, fake["conv1.weight"])
