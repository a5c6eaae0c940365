"""Shared fixtures: tiny models and data made here, nothing downloaded."""

from __future__ import annotations

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


def tiny_joint(num_classes: int = 2, seed: int = 0) -> Classifier:
    """A joint model (xML VGG classifier + U-Net explainer), deterministic from ``seed``."""
    from xaibench.methods.joint.explainer import Explainer
    from xaibench.methods.joint.model import XMLVGG, JointClassifier, gate_points

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = XMLVGG(num_classes)
        model = JointClassifier(net, Explainer(init_bias=1.0), gates=gate_points(net),
                                cam_layer="net.features.6")
    return model.eval()


TINY = {"plain": ("tiny", tiny_net), "joint": ("joint_tiny", tiny_joint)}


@pytest.fixture
def tiny_model() -> Classifier:
    return tiny_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
