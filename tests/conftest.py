"""Shared fixtures: tiny models and data made here, nothing downloaded."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from xaibench.models import Classifier


def tiny_net(num_classes: int = 2, seed: int = 0) -> Classifier:
    """A 2-conv CNN in the pixel-space wrapper, deterministic from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return Classifier(net, cam_layer="net.2").eval()


@pytest.fixture
def tiny_model() -> Classifier:
    return tiny_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])


def tiny_joint(num_classes: int = 2, seed: int = 0) -> Classifier:
    """A real joint model (xML VGG classifier + U-Net explainer), deterministic from ``seed``."""
    from xaibench.methods.joint.explainer import Explainer
    from xaibench.methods.joint.model import XMLVGG, JointClassifier, gate_points

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = XMLVGG(num_classes)
        model = JointClassifier(net, Explainer(init_bias=1.0), gates=gate_points(net),
                                cam_layer="net.features.6")
    return model.eval()


def tiny_resnet(num_classes: int = 2, seed: int = 0) -> Classifier:
    """A one-block-per-stage torchvision ResNet (BasicBlocks, batch norms with random statistics)
    in the pixel-space wrapper, stem max-pool dropped as for small images (a fresh copy)."""
    return copy.deepcopy(_tiny_resnet(num_classes, seed))


@functools.lru_cache(maxsize=4)
def _tiny_resnet(num_classes: int, seed: int) -> Classifier:
    from torchvision.models.resnet import BasicBlock, ResNet

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # torchvision initialises from the global RNG
        net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)
    net.maxpool = nn.Identity()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return Classifier(net, cam_layer="net.layer4").eval()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test of tiny models on one intra-op thread (restored afterwards): their ops are too
    small to gain from threads, and on a busy machine idle-spinning threads cost most of the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_vit(num_classes: int = 2, seed: int = 0, *, img_size: int = 16, patch_size: int = 4,
             source: str = "timm") -> Classifier:
    """A 2-block vision transformer (embedding 16, 2 heads, class token) in the pixel-space
    wrapper, its Grad-CAM layer left to the family default (``cam_layer=None``); ``source``
    "timm" (``timm...VisionTransformer``) or "torchvision". Weights drawn from ``seed`` at a
    scale that makes the attention far from uniform (a fresh copy)."""
    return copy.deepcopy(_tiny_vit(num_classes, seed, img_size, patch_size, source))


@functools.lru_cache(maxsize=8)
def _tiny_vit(num_classes: int, seed: int, img_size: int, patch_size: int, source: str) -> Classifier:
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # timm and torchvision initialise from the global RNG
        if source == "timm":
            from timm.models.vision_transformer import VisionTransformer

            net = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=16, depth=2,
                                    num_heads=2, num_classes=num_classes)
        else:
            from torchvision.models.vision_transformer import VisionTransformer

            net = VisionTransformer(image_size=img_size, patch_size=patch_size, num_layers=2, num_heads=2,
                                    hidden_dim=16, mlp_dim=32, num_classes=num_classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return Classifier(net, cam_layer=None).eval()  # type: ignore[arg-type]
