"""The trainable backbones: torchvision ResNets and VGGs with a new head, in the pixel-space wrapper
(:class:`xaibench.models.classifier.Classifier`), optionally from ImageNet weights on disk."""

from __future__ import annotations

from pathlib import Path

import torch

from xaibench.models.classifier import Classifier


def backbone_network(arch: str, num_classes: int, small_stem: bool, weights: dict | None) -> Classifier:
    """torchvision's ``arch`` (a ResNet or a VGG) with a ``num_classes`` head, in the pixel-space
    wrapper. ``small_stem`` drops the stem's max-pool (ResNet) or the last pool (VGG), so small
    images keep a usable final feature map; ``weights`` (ImageNet's) are loaded before the head
    is replaced. Grad-CAM's default layer: the last residual stage, or VGG's last ReLU."""
    import torchvision.models as tvm

    from xaibench.models.classifier import Classifier

    net = tvm.get_model(arch, weights=None)
    if weights is not None:
        net.load_state_dict(weights)
    if isinstance(net, tvm.ResNet):
        net.fc = torch.nn.Linear(net.fc.in_features, num_classes)
        if small_stem:
            net.maxpool = torch.nn.Identity()
        return Classifier(net, cam_layer="net.layer4")
    if isinstance(net, tvm.VGG):
        net.classifier[-1] = torch.nn.Linear(net.classifier[-1].in_features, num_classes)
        if small_stem:
            net.features[-1] = torch.nn.Identity()
        return Classifier(net, cam_layer=f"net.features.{len(net.features) - 2}")
    raise ValueError(f"{arch} is neither a torchvision ResNet nor a VGG: xaibench cannot train it "
                     f"(evaluate it as arch = 'torchvision:{arch}' instead)")


def pretrained_weights(arch: str, weights_path: str | None) -> dict:
    """torchvision's ImageNet weights for ``arch``, read from disk only (never downloaded).

    Looks at ``weights_path`` when given, else at torchvision's cache file
    (``$TORCH_HOME/hub/checkpoints/<file>``).

    Raises:
        FileNotFoundError: with the expected path and how to get the file there.
    """
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    filename = weights.url.rsplit("/", 1)[-1]
    path = Path(weights_path) if weights_path else Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {arch} not found at {path}. xaibench never downloads at run "
            f"time: fetch {weights.url} on a machine with internet and copy it there (or set "
            f"weights_path), or set pretrained = false")
    return torch.load(path, map_location="cpu", weights_only=True)
