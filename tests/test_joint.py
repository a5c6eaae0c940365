"""The xML joint explainer: losses by hand, architecture, gates, three-phase training."""

import copy
import math

import pytest
import torch
from torch import nn

from xaibench.config import ConfigError, parse
from xaibench.datasets.synthetic import Synthetic
from xaibench.methods.joint import losses
from xaibench.methods.joint.explainer import Explainer
from xaibench.methods.joint.model import Gate, JointClassifier
from xaibench.methods.joint.train import (
    JointModelConfig,
    phase_optimizer,
    recalibrate_phase,
    run_epoch,
    train_joint,
    train_phase,
)
from xaibench.plugins import Dataset, ParamError
from xaibench.registry import DATASETS

Z = torch.tensor([[[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]])  # one 2x3 map
M = torch.tensor([[[0, 1, 1], [0, 0, 0]]], dtype=torch.bool)


def test_sparsity_and_contiguity_by_hand():
    assert losses.sparsity(Z).item() == pytest.approx(3 / 6)
    # vertical pairs: 3, one differs -> 1/3; horizontal pairs: 4, two differ -> 2/4
    assert losses.contiguity(Z).item() == pytest.approx(1 / 3 + 2 / 4)
    assert losses.contiguity(Z[:, None]).item() == pytest.approx(1 / 3 + 2 / 4)  # [B,1,H,W] too


def test_unsupervised_hybrid_and_total_by_hand():
    unsup = 0.9 * 0.5 + 0.1 * (1 / 3 + 1 / 2)
    assert losses.unsupervised(Z, beta=0.9).item() == pytest.approx(unsup)
    # outside the mask: 4 pixels, z sums to 1 there
    assert losses.outside_mask(Z, M).item() == pytest.approx(1 / 4, rel=1e-5)
    assert losses.hybrid(Z, M, beta=0.9, gamma=2.0).item() == pytest.approx(unsup + 0.5, rel=1e-5)
    logits, labels = torch.zeros(1, 2), torch.tensor([0])
    total, ce, expl = losses.total(logits, labels, torch.tensor([0.4]), alpha=0.25)
    assert ce.item() == pytest.approx(math.log(2))
    assert total.item() == pytest.approx(0.25 * math.log(2) + 0.75 * 0.4)
    # class weights weigh the CE term
    logits2, labels2 = torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0])
    _, wce, _ = losses.total(logits2, labels2, torch.zeros(2), alpha=1.0, class_weights=weights)
    ce1 = math.log(2)
    ce2 = -math.log(math.exp(0) / (math.exp(2) + 1))
    assert wce.item() == pytest.approx((1 * ce1 + 3 * ce2) / 4)


def test_empty_mask_penalises_the_whole_map():
    z = torch.full((1, 4, 4), 0.5)
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert losses.outside_mask(z, empty).item() == pytest.approx(0.5, rel=1e-5)


def test_explainer_range_and_initial_maps():
    torch.manual_seed(0)
    for bias in (3.0, 1.0):
        e = Explainer(init_bias=bias).eval()
        with torch.no_grad():
            z = e(torch.randn(2, 3, 32, 48))
        assert z.shape == (2, 1, 32, 48)
        assert (z >= 0).all() and (z < 1).all()
        assert (z - math.tanh(bias)).abs().max() < 0.05
    with pytest.raises(ValueError, match="divisible by 8"):
        Explainer()(torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize("arch,count", [("joint_resnet18", 9), ("joint_resnet50", 17), ("joint_vgg16", 5),
                                        ("joint_xml_vgg", 4)])
def test_gate_count(arch, count):
    model = JointModelConfig(id="m", arch=arch).build(2, (64, 64))
    assert len(model.gates()) == count == len(model.gate_names)


class Constant(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), self.value)


@pytest.mark.parametrize("size,stem", [(32, "auto"), (64, "auto"), (96, "imagenet")])
def test_gates_multiply_every_feature_map(size, stem):
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", stem=stem)
    model = cfg.build(3, (size, size)).eval()
    plain = copy.deepcopy(model)
    x = torch.rand(2, 3, size, size)
    shapes = []
    for gate in model.gates():
        gate.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    with torch.no_grad():
        model.explainer = Constant(1.0)  # all-ones gates: the backbone unchanged
        ones = model(x)
        model.explainer = Constant(0.5)
        half = model(x)
        for gate in plain.gates():  # the same backbone without gates
            gate.forward = gate.inner.forward
        reference = plain.net((x - plain.mean) / plain.std)
    assert torch.allclose(ones, reference, atol=1e-5)
    assert not torch.allclose(half, reference, atol=1e-3)
    assert len(shapes) == 18  # 9 gates, two forwards
    assert shapes[0][-1] == size // 2 if stem == "auto" else size // 4  # after the stem
    assert shapes[8][-1] == max(1, shapes[0][-1] // 8)  # after the last block


def test_gate_gradients_reach_the_explainer_and_constant_gates_detach():
    model = JointModelConfig(id="m", arch="joint_xml_vgg").build(2, (16, 16))
    x = torch.rand(2, 3, 16, 16)
    model(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.explainer.parameters())
    model.zero_grad(set_to_none=True)
    with model.constant_gates():
        model(x).sum().backward()
    assert all(p.grad is None for p in model.explainer.parameters())
    assert not model._source.detach


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    ds = Synthetic(image_size=32, n_train=32, n_val=16, n_test=8, radius=(3, 6), n_shapes=(1, 3))
    return ds.load(cache_dir=tmp_path_factory.mktemp("data"), seed=0)


@pytest.mark.parametrize("phase,frozen", [(0, "explainer"), (1, "net")])
def test_frozen_module_unchanged_and_in_eval_mode(splits, phase, frozen):
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", epochs=(1, 1, 1), batch_size=16, loss="hybrid",
                           lr_classifier=(0.05, 0.05, 0.05), lr_explainer=(0.05, 0.05, 0.05),
                           frozen_bn="eval")
    model = cfg.build(2, (32, 32))
    module = getattr(model, frozen)
    other = model.net if frozen == "explainer" else model.explainer
    before = {k: v.clone() for k, v in module.state_dict().items()}
    before_other = {k: v.clone() for k, v in other.state_dict().items()}
    modes = []
    module.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    train_phase(model, splits, cfg, phase, device=torch.device("cpu"), seed=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # bitwise, BN stats too
    assert not any(modes) and modes  # ran, always in eval mode
    assert any(not torch.equal(before_other[k], v) for k, v in other.state_dict().items())


def test_phase2_frozen_classifier_in_train_mode_updates_only_its_batchnorm_statistics(splits):
    """frozen_bn = "train" (the original's): in phase 2 the classifier's weights stay bitwise
    fixed, but it runs in train mode, so its BatchNorm running statistics follow the batches."""
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", epochs=(1, 1, 1), batch_size=16, loss="hybrid",
                           lr_explainer=(0.05, 0.05, 0.05))
    assert cfg.frozen_bn == "train"
    model = cfg.build(2, (32, 32))
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    modes = []
    model.net.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    train_phase(model, splits, cfg, 1, device=torch.device("cpu"), seed=0, progress=False)
    after = model.net.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    weights = [k for k in after if k not in stats]
    assert stats and weights
    assert all(torch.equal(before[k], after[k]) for k in weights)  # weights and BN affine: fixed
    assert all(not torch.equal(before[k], after[k]) for k in stats if "running" in k)  # every BN layer moved
    assert True in modes and False in modes  # train mode while training, eval mode for validation
    assert all(not p.requires_grad for p in model.net.parameters())


def test_phase2_frozen_bn_learn_trains_only_the_classifiers_batchnorm(splits):
    """frozen_bn = "learn": in phase 2 the classifier's BatchNorm weights and biases train (at
    phase 2's lr_classifier) and its running statistics follow the batches; every other classifier
    weight stays bitwise fixed."""
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", epochs=(1, 1, 1), batch_size=16, loss="hybrid",
                           lr_classifier=(0.05, 0.05, 0.05), lr_explainer=(0.05, 0.05, 0.05),
                           frozen_bn="learn")
    model = cfg.build(2, (32, 32))
    norms = {n for n, m in model.net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    train_phase(model, splits, cfg, 1, device=torch.device("cpu"), seed=0, progress=False)
    after = model.net.state_dict()
    affine = [k for k in after if k.rsplit(".", 1)[0] in norms and k.endswith(("weight", "bias"))]
    fixed = [k for k in after if k.rsplit(".", 1)[0] not in norms]
    assert affine and fixed
    assert all(not torch.equal(before[k], after[k]) for k in affine)  # every BatchNorm learned
    assert all(torch.equal(before[k], after[k]) for k in fixed)  # convolutions and the head: fixed
    with pytest.raises(ParamError, match="frozen_bn = 'learn' trains the classifier's BatchNorm in phase 2: "
                                         "its learning rate must be > 0, got 0.0"):
        JointModelConfig(id="m", frozen_bn="learn", lr_classifier=(0.01, 0.0, 0.01))


def test_frozen_bn_enters_the_phase_keys_from_phase_2():
    train, evalm = (JointModelConfig(id="m", frozen_bn=mode) for mode in ("train", "eval"))
    assert train.phase_key(0, "d", 0) == evalm.phase_key(0, "d", 0)  # phase 1 has no frozen classifier
    assert train.phase_key(1, "d", 0) != evalm.phase_key(1, "d", 0)
    assert train.phase_key(2, "d", 0) != evalm.phase_key(2, "d", 0)
    resize = JointModelConfig(id="m", upsample="resize")
    assert resize.phase_key(0, "d", 0) != train.phase_key(0, "d", 0)  # the explainer gates phase 1
    pos = JointModelConfig(id="m", loss="hybrid", hybrid_images="positives")
    allimg = JointModelConfig(id="m", loss="hybrid")
    assert pos.phase_key(0, "d", 0) == allimg.phase_key(0, "d", 0)
    assert pos.phase_key(1, "d", 0) != allimg.phase_key(1, "d", 0)


def test_resize_upsampling_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 24, 40)
    for bias in (3.0, 0.0, -0.5):
        e = Explainer(init_bias=bias, upsample="resize").eval()
        assert not any(isinstance(m, nn.ConvTranspose2d) for m in e.modules())
        with torch.no_grad():
            z = e(x)
        assert z.shape == (2, 1, 24, 40)
        assert z.min() >= 0 and z.max() < 1 and torch.isfinite(z).all()
    e = Explainer(init_bias=3.0, upsample="resize").eval()
    with torch.no_grad():
        assert e(x).min() > 0.95  # tanh(3) ~ 0.995 everywhere at the start, as "transpose"
    z = Explainer(upsample="resize").train()(x)
    z.sum().backward()  # differentiable end to end


def test_reflection_padding_leaves_no_frame_on_a_constant_image():
    torch.manual_seed(0)
    x = torch.full((1, 3, 32, 32), 0.7)
    maps = {}
    for padding in ("zeros", "reflect"):
        e = Explainer(init_bias=0.5, upsample="resize", padding=padding).eval()
        convs = [m for m in e.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert convs and all(m.padding_mode == padding for m in convs)
        with torch.no_grad():
            maps[padding] = e(x)[0, 0]
        assert maps[padding].shape == (32, 32) and 0 <= maps[padding].min() and maps[padding].max() < 1
    # reflecting a constant image is constant: every pixel, border included, sees the same input
    assert torch.allclose(maps["reflect"], maps["reflect"][16, 16].expand(32, 32), atol=1e-6)
    # zero padding makes the border differ from the interior: the frame of docs/joint.md
    assert (maps["zeros"][0] - maps["zeros"][16, 16]).abs().max() > 1e-3
    zeros, reflect = (JointModelConfig(id="m", padding=p) for p in ("zeros", "reflect"))
    assert zeros.phase_key(0, "d", 0) != reflect.phase_key(0, "d", 0)


def test_hybrid_term_on_positives_only_by_hand():
    z = torch.tensor([[[0.5, 1.0], [0.0, 0.5]], [[1.0, 1.0], [1.0, 0.0]]])
    masks = torch.tensor([[[0, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.bool)
    outside = losses.outside_mask(z, masks)  # (0.5 + 0 + 0.5) / 3, and 3 / 4 on the empty mask
    assert outside.tolist() == pytest.approx([1 / 3, 0.75], abs=1e-5)
    unsup = losses.unsupervised(z, beta=0.5)
    assert torch.allclose(losses.hybrid(z, masks, beta=0.5, gamma=2.0), unsup + 2 * outside)
    pos = losses.hybrid(z, masks, beta=0.5, gamma=2.0, images="positives")
    assert torch.allclose(pos, unsup + 2 * torch.tensor([1 / 3, 0.0]), atol=1e-6)


@pytest.mark.parametrize("phase,frozen,frozen_bn", [(0, "explainer", "train"), (1, "net", "eval"),
                                                   (1, None, "train"), (2, None, "train")])
def test_batchnorm_recalibration_matches_the_batch_statistics(splits, phase, frozen, frozen_bn):
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", batch_size=len(splits.train), bn_recalibration=1,
                           frozen_bn=frozen_bn)
    model = cfg.build(2, (32, 32))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:  # stale statistics, as after fast-moving training steps
        m.running_mean.fill_(5.0)
        m.running_var.fill_(9.0)
    before = None if frozen is None else copy.deepcopy(getattr(model, frozen).state_dict())
    recalibrate_phase(model, splits.train, cfg, phase, device=torch.device("cpu"),
                      generator=torch.Generator().manual_seed(0))
    if frozen is not None:  # the frozen module: bitwise unchanged and in eval mode
        assert all(torch.equal(before[k], v) for k, v in getattr(model, frozen).state_dict().items())
        assert not getattr(model, frozen).training
    assert all(m.momentum == 0.1 for m in norms)  # momentum restored
    # one batch holding the whole split: eval mode now reproduces train mode's batch statistics
    images, _, _ = splits.train.batch(slice(None))
    model.train()
    if frozen is not None:
        getattr(model, frozen).eval()
    with torch.no_grad():
        logits_train, z_train = model.forward_with_explanation(images)
        model.eval()
        logits_eval, z_eval = model.forward_with_explanation(images)
    assert torch.allclose(z_eval, z_train, atol=1e-3)
    assert torch.allclose(logits_eval, logits_train, atol=1e-2, rtol=1e-2)


def test_explainer_optimizer_per_module():
    cfg = JointModelConfig(id="m", arch="joint_xml_vgg", explainer_optimizer="adam",
                           lr_explainer=(0.0, 3e-4, 1e-4))
    model = cfg.build(2, (32, 32))
    kinds = [[type(o).__name__ for o in phase_optimizer(model, cfg, p).optimizers] for p in range(3)]
    assert kinds == [["SGD"], ["Adam"], ["SGD", "Adam"]]
    adam = phase_optimizer(model, cfg, 2).optimizers[1]
    assert adam.param_groups[0]["lr"] == 1e-4
    assert {id(p) for p in adam.param_groups[0]["params"]} == {id(p) for p in model.explainer.parameters()}
    same = JointModelConfig(id="m", arch="joint_xml_vgg")
    assert [type(o).__name__ for o in phase_optimizer(model, same, 2).optimizers] == ["SGD"]


def test_training_steps_lower_the_loss(splits):
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_resnet18", batch_size=32, loss="hybrid")
    model = cfg.build(2, (32, 32))
    model.train()
    opt = cfg.optimizer_for([{"params": model.parameters(), "lr": 0.01}])
    images, labels, masks = splits.train.batch(slice(0, 32))
    from xaibench.methods.joint.train import explanation_loss

    values = []
    for _ in range(6):
        logits, z = model.forward_with_explanation(images)
        loss, _, _ = losses.total(logits, labels, explanation_loss(z, masks, cfg), alpha=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[-1] < values[0]


def test_three_phases_cached_and_shared(splits, tmp_path):
    kw = dict(arch="joint_xml_vgg", epochs=(1, 1, 1), batch_size=16, lr_classifier=(0.05, 0, 0.05))
    unsup = JointModelConfig(id="u", loss="unsupervised", **kw)
    hybrid = JointModelConfig(id="h", loss="hybrid", **kw)
    assert unsup.phase_key(0, "d", 0) == hybrid.phase_key(0, "d", 0)  # alpha 1: no explanation loss
    assert unsup.phase_key(1, "d", 0) != hybrid.phase_key(1, "d", 0)
    assert JointModelConfig(id="u", alpha=(0.9, 0.25, 0.9), **kw).phase_key(0, "d", 0) != \
        JointModelConfig(id="h", alpha=(0.9, 0.25, 0.9), loss="hybrid", **kw).phase_key(0, "d", 0)
    torch.manual_seed(0)
    model = unsup.build(2, (32, 32))
    history = train_joint(model, splits, unsup, device=torch.device("cpu"), seed=0, progress=False,
                          cache_dir=tmp_path, data_key="d")
    assert [r["phase"] for r in history] == [1, 2, 3]
    assert {"train_loss", "train_ce", "train_expl", "val_loss", "val_acc", "val_mass"} <= set(history[0])
    assert all(0 <= r["val_mass"] <= 1 for r in history)
    assert len(list((tmp_path / "joint-phases").iterdir())) == 3
    assert not model.training and all(p.requires_grad for p in model.parameters())
    # a resumed run (phases read back from the cache) ends with the same weights
    again = unsup.build(2, (32, 32))
    history2 = train_joint(again, splits, unsup, device=torch.device("cpu"), seed=0, progress=False,
                           cache_dir=tmp_path, data_key="d")
    assert history2 == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    val = run_epoch(again, splits.val, unsup, alpha=1.0, device=torch.device("cpu"))
    assert 0 <= val["acc"] <= 1


def test_epoch_reports_the_maps_mass_inside_the_masks(splits):
    torch.manual_seed(0)
    cfg = JointModelConfig(id="m", arch="joint_xml_vgg", batch_size=5, init_bias=0.2)
    model = cfg.build(2, (32, 32)).eval()
    out = run_epoch(model, splits.val, cfg, alpha=1.0, device=torch.device("cpu"))
    with torch.no_grad():
        z = model.explain(splits.val.images.float() / 255)[:, 0].double()
    shares = [(z[i] * m).sum() / z[i].sum() for i, m in enumerate(splits.val.masks) if m.any()]
    assert 0 < len(shares) < len(splits.val)  # negatives (empty masks) are left out
    assert out["mass"] == pytest.approx(torch.stack(shares).mean().item(), rel=1e-4)
    from xaibench.datasets.splits import Split

    unmasked = Split(splits.val.images, splits.val.labels)
    assert "mass" not in run_epoch(model, unmasked, cfg, alpha=1.0, device=torch.device("cpu"))


def test_augmentation_moves_image_and_mask_together(splits):
    from xaibench.methods.joint.train import augment_batch

    images, _, masks = splits.train.batch(slice(0, 16))
    torch.manual_seed(0)
    aug_i, aug_m = augment_batch(images, masks, 1.0)
    assert aug_i.shape == images.shape and aug_m.dtype == torch.bool
    assert not torch.equal(aug_i, images)
    # in the colour variant, green target pixels stay inside the (augmented) mask
    r, g, b = aug_i[:, 0], aug_i[:, 1], aug_i[:, 2]
    green = (g > r + 0.3) & (g > b + 0.3)
    assert (green & ~aug_m).sum() <= 0.05 * green.sum()


# -- config-time checks -----------------------------------------------------------------------------


@DATASETS.register("nomask_fixture")
class NoMasks(Dataset):
    """A dataset without masks (test fixture)."""

    def __init__(self, *, image_size: int = 32) -> None:
        self.size = image_size

    @property
    def has_masks(self):
        return False

    @property
    def image_size(self):
        return (self.size, self.size)


BASE = {
    "dataset": {"name": "synthetic", "image_size": 32, "radius": [3, 6], "n_shapes": [1, 3]},
    "models": {"j": {"arch": "joint_resnet18", "loss": "hybrid"}, "r": {"arch": "resnet18"}},
    "methods": {"joint": {}, "gradcam": {}},
    "metrics": {"aopc": {"patch_size": 8, "steps": 4}},
}


def check(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse(raw, name="t", source="t.toml")


def test_joint_config_parses_and_applies_methods():
    cfg = parse(copy.deepcopy(BASE), name="t", source="t.toml")
    j = next(m for m in cfg.models if m.id == "j")
    assert isinstance(j, JointModelConfig) and j.epochs == (10, 10, 100) and j.requires_masks


def test_image_size_not_divisible_by_8():
    raw = copy.deepcopy(BASE)
    raw["dataset"]["image_size"] = 36
    check(raw, r"\[models.j\] arch: the joint explainer needs H and W divisible by 8, got 36x36")


def test_hybrid_without_masks():
    raw = copy.deepcopy(BASE)
    raw["dataset"] = {"name": "nomask_fixture"}
    del raw["metrics"]["aopc"]["steps"]
    check(raw, r"\[models.j\] loss 'hybrid' needs ground-truth masks, but dataset 'nomask_fixture' has none")


def test_joint_method_on_plain_model():
    raw = copy.deepcopy(BASE)
    raw["methods"]["joint"] = {"models": ["r"]}
    check(raw, r"\[methods.joint\] method 'joint' cannot explain model 'r' \(resnet18\): "
               r"it needs a joint model")
    raw = copy.deepcopy(BASE)
    del raw["models"]["j"]
    check(raw, r"\[methods.joint\] method 'joint' applies to none of the models \(r: resnet18\)")
    raw = copy.deepcopy(BASE)
    raw["methods"]["gradcam"] = {"models": ["x"]}
    check(raw, r"\[methods.gradcam\] models: unknown model 'x'; models in this config: j, r")


def test_phase_lists_checked():
    raw = copy.deepcopy(BASE)
    raw["models"]["j"]["alpha"] = [1.0, 0.5]
    check(raw, r"\[models.j\] alpha: needs one value per phase \(3 values\), got \[1.0, 0.5\]")
    raw["models"]["j"]["alpha"] = [1.0, 0.5, 1.5]
    check(raw, r"alpha: must be in \[0.0, 1.0\], got 1.5")
    raw["models"]["j"]["alpha"] = [1.0, 0.5, 0.9]
    raw["models"]["j"]["lr_explainer"] = [0.0, 0.0, 0.01]
    check(raw, r"lr_explainer: phase 2 trains the explainer: its learning rate must be > 0")
    raw["models"]["j"]["lr_explainer"] = [0.0, 0.01, 0.01]
    raw["models"]["j"]["bn_recalibration"] = -1
    check(raw, r"bn_recalibration: must be")


def test_joint_method_returns_the_explanation():
    from xaibench.methods.joint.method import Joint

    from .conftest import tiny_joint, tiny_net

    model = tiny_joint()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected = model.explain(x)[:, 0]
    assert torch.equal(Joint().attribute(model, x, torch.zeros(3, dtype=torch.long)), expected)
    with pytest.raises(TypeError, match="needs a joint model"):
        Joint().attribute(tiny_net(), x, torch.zeros(3, dtype=torch.long))
    assert isinstance(model, JointClassifier) and all(isinstance(g, Gate) for g in model.gates())



@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_gate_pooling_has_a_deterministic_backward():
    """On CUDA the gates pool the map with avg_pool2d where the feature size divides the map's:
    the values are adaptive_avg_pool2d's (to rounding) and the backward runs under
    torch.use_deterministic_algorithms (adaptive_avg_pool2d's raises there)."""
    from xaibench.methods.joint.model import pool_to

    z = torch.rand(4, 1, 64, 64, device="cuda", requires_grad=True)
    try:
        torch.use_deterministic_algorithms(True)
        for out in [(32, 32), (8, 8), (2, 2), (1, 1)]:
            a = pool_to(z, out)
            torch.testing.assert_close(a, torch.nn.functional.adaptive_avg_pool2d(z, out))
            grads = [torch.autograd.grad(pool_to(z, out).square().sum(), z)[0] for _ in range(2)]
            assert torch.equal(*grads), out
    finally:
        torch.use_deterministic_algorithms(False)
