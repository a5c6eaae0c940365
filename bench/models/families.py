"""Model families: which kind of network an architecture name or a built model is.

A method declares the families it can explain (``Method.families``); the config check asks
:func:`arch_family` (a pure string function, no torch import) and the runner or a test asks
``xaibench.methods.layers.model_family`` about a built model when the name cannot tell (a
``python:`` factory, a TorchScript file).

Families:

- ``"cnn"``: convolutional networks (ResNet, VGG, the joint models, ConvNeXt, EfficientNet, ...).
- ``"vit"``: plain vision transformers: a patch embedding, a class token (or none) and a stack
  of global self-attention blocks (timm ``VisionTransformer``: ViT, DeiT, DeiT-III; torchvision
  ``VisionTransformer``: ``vit_b_16`` ...). Windowed transformers (Swin) are neither.
"""

from __future__ import annotations

from typing import Any

FAMILIES = ("cnn", "vit")

# Architecture-name prefixes per source ("" = xaibench's own trainable architectures).
_PREFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    "": {"cnn": ("resnet", "vgg", "joint_")},
    "timm": {"vit": ("vit_", "deit_", "deit3_"),
             "cnn": ("resnet", "resnext", "wide_resnet", "vgg", "densenet", "efficientnet", "mobilenet",
                     "convnext", "regnet", "inception")},
    "torchvision": {"vit": ("vit_",),
                    "cnn": ("resnet", "resnext", "wide_resnet", "vgg", "densenet", "efficientnet",
                            "mobilenet", "convnext", "regnet", "alexnet", "googlenet", "inception",
                            "squeezenet", "shufflenet", "mnasnet")},
}


def arch_family(arch: str) -> str | None:
    """The family of architecture ``arch`` ("cnn", "vit"), or None when the name cannot tell.

    ``resnet18``, ``vgg16``, ``joint_*``: "cnn"; ``timm:vit_small_patch16_224``,
    ``timm:deit_tiny_patch16_224``, ``torchvision:vit_b_16``: "vit"; ``torchvision:resnet50``:
    "cnn"; ``python:...``, ``torchscript:...`` and unknown names: None (the built model decides,
    see ``xaibench.methods.layers.model_family``).
    """
    source, _, name = arch.rpartition(":")
    for family, prefixes in _PREFIXES.get(source, {}).items():
        if name.startswith(prefixes):
            return family
    return None


def explains(method: Any, arch: str = "", family: str | None = None) -> bool:
    """The one answer to "can this method explain this model?", asked by the config check (from the
    architecture name), the run (from the built network's family), the Python API and the
    contract tests: the method's own rule for the architecture name (``method.supports``) and the
    families it declares (``method.supports_family``), where the family is known (from the name,
    or ``xaibench.methods.layers.model_family`` of a built network)."""
    return (not arch or method.supports(arch)) and (family is None or method.supports_family(family))
