"""Joint explainer + classifier: the explanation gates the classifier's feature maps.

The gate wiring is generic: :func:`gate_points` names the modules after which the explanation
multiplies the features, and :class:`JointClassifier` wraps each of them in a :class:`Gate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from xaibench.models.classifier import Classifier

from .explainer import ConvMod, Explainer


class _GateSource:
    """The current explanation, shared by the gates of one model during a forward pass."""

    def __init__(self) -> None:
        self.z: torch.Tensor | None = None
        self.detach = False


class Gate(nn.Module):
    """Runs ``inner`` and multiplies its output by the explanation, average-pooled to the
    output's resolution and broadcast over channels."""

    def __init__(self, inner: nn.Module, source: _GateSource) -> None:
        super().__init__()
        self.inner = inner
        self._source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        z = self._source.z
        if z is None:
            raise RuntimeError("a Gate ran outside its JointClassifier's forward")
        if self._source.detach:
            z = z.detach()
        return out * pool_to(z, out.shape[-2:])


def pool_to(z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``z`` average-pooled to ``size``. On CUDA, where ``size`` divides z's and is not 1 x 1, this
    is avg_pool2d, whose backward is deterministic (adaptive_avg_pool2d's adds with atomics, in an
    order that changes from run to run); elsewhere, and on the CPU always, adaptive_avg_pool2d
    (whose 1 x 1 case is a mean, deterministic on CUDA too)."""
    (h, w), (oh, ow) = z.shape[-2:], size
    if z.is_cuda and (oh, ow) != (1, 1) and h % oh == 0 and w % ow == 0:
        return F.avg_pool2d(z, (h // oh, w // ow))
    return F.adaptive_avg_pool2d(z, size)


class JointClassifier(Classifier):
    """Classifier whose feature maps are gated by an in-model explainer (Rio-Torto et al. 2020).

    Rio-Torto, Fernandes and Teixeira, "Understanding the decisions of CNNs: an in-model
    approach", Pattern Recognition Letters 133, 2020. ``forward`` maps images in [0, 1] to
    logits, running the explainer on the same normalised input; :meth:`explain` returns the map.

    Args:
        net: the classifier backbone (on normalised images).
        explainer: the U-Net explainer.
        gates: dotted names (inside ``net``) of the modules whose outputs are gated.
        cam_layer: the default Grad-CAM layer (from this module).
    """

    def __init__(self, net: nn.Module, explainer: Explainer, *, gates: list[str], cam_layer: str) -> None:
        super().__init__(net, cam_layer=cam_layer)
        self.explainer = explainer
        self._source = _GateSource()
        self.gate_names = tuple(gates)
        for name in gates:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, Gate(parent.get_submodule(child), self._source))

    def explain(self, images: torch.Tensor) -> torch.Tensor:
        """The explanation [B, 1, H, W] in [0, 1) for images [B, 3, H, W] in [0, 1]."""
        return self.explainer((images - self.mean) / self.std)

    def forward_with_explanation(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, C], explanation [B, 1, H, W]) in one pass."""
        x = (images - self.mean) / self.std
        z = self.explainer(x)
        self._source.z = z
        try:
            return self.net(x), z
        finally:
            self._source.z = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_with_explanation(images)[0]

    def gates(self) -> list[Gate]:
        return [m for m in self.net.modules() if isinstance(m, Gate)]

    @contextmanager
    def constant_gates(self) -> Iterator[None]:
        """Within this context the gates use the explanation detached: gradients and relevance
        pass through the gates as through multiplications by constants."""
        before = self._source.detach
        self._source.detach = True
        try:
            yield
        finally:
            self._source.detach = before


# -- gate placement per backbone -------------------------------------------------------------------


def gate_points(net: nn.Module) -> list[str]:
    """Where the explanation gates go, by the backbone's structure.

    ResNets: after the stem (its max-pool, or the Identity that replaces it) and after every
    residual block. VGG-style ``features`` stacks and the xML VGG: after each conv stage, i.e.
    on the module right before each MaxPool2d (or before the Identity that replaced the last one).
    """
    if hasattr(net, "layer1") and hasattr(net, "maxpool"):
        blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(net, f"layer{i}")))]
        return ["maxpool", *blocks]
    if hasattr(net, "features"):
        feats = list(net.features)
        ends = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
        if feats and isinstance(feats[-1], nn.Identity):
            ends.append(len(feats) - 1)  # the last pool was replaced by Identity for small images
        return [f"features.{i - 1}" for i in ends]
    raise ValueError(f"no gate placement known for {type(net).__name__}; supported: torchvision "
                     "ResNets, VGG-style nets with a `features` stack, the xML VGG")


class XMLVGG(nn.Module):
    """The original xML classifier: 4 ConvMod stages (32, 64, 128, 256), each followed by a 2x2
    max-pool, then global average pooling and a small MLP head.

    The original flattens the last feature map into its MLP; global average pooling is used here
    so the head does not depend on the image size.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 32), (32, 64), (64, 128), (128, 256)):
            layers += [ConvMod(cin, cout), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 128),
                                        nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
