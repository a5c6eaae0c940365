"""Tiny models for contract checks and tests: a tiny CNN, a tiny ResNet, a tiny vision transformer
(timm's or torchvision's) and a tiny joint model, each in the pixel-space wrapper, built from a
seed in milliseconds."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from xaibench.models.classifier import Classifier


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


# The tiny models a method is checked on: (label, factory, architecture name it stands for, batch).
MODELS_FOR_METHODS = (("tiny CNN", tiny_net, "tiny", 1), ("tiny CNN", tiny_net, "tiny", 8),
                      ("tiny ResNet", tiny_resnet, "tiny", 2), ("tiny ViT", tiny_vit, "timm:vit_tiny", 2),
                      ("tiny joint model", tiny_joint, "joint_xml_vgg", 2))
