"""Where a model's family-specific parts are: its vision-transformer backbone, the default Grad-CAM
layer, the token grid, and how a layer's output becomes an image-shaped map.

One table, :data:`FAMILY_LAYOUTS`, holds what differs between families, so methods never branch on
class names themselves:

- a CNN's default Grad-CAM layer is the model's ``cam_layer`` attribute (the last convolutional
  stage, e.g. ``net.layer4`` of a ResNet), else its last ``Conv2d``;
- a ViT's (timm ``VisionTransformer``: ViT, DeiT, DeiT-III; torchvision ``VisionTransformer``) is
  the first LayerNorm of its LAST block (timm ``blocks.<L-1>.norm1``, torchvision
  ``encoder.layers.encoder_layer_<L-1>.ln_1``): the last block's input tokens, as
  pytorch-grad-cam recommends. Not the last block's output: a class-token ViT feeds only the
  class token to the head, so the gradient at every patch token of the last block's output is
  exactly zero (and Grad-CAM there is an empty map). The layer's output [B, T, C] has its
  T - h*w prefix tokens (class, distillation, register tokens) dropped and the h x w patch
  tokens (row-major, as the patch embedding flattened them) reshaped to an image [B, C, h, w]
  (:func:`to_grid`). A model wrapper may name its own ``cam_layer``; it wins for either family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def _vit_classes() -> tuple[type, ...]:
    from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

    classes: list[type] = [TorchvisionViT]
    try:
        from timm.models.vision_transformer import VisionTransformer as TimmViT
    except ImportError:  # timm is a dependency, but a broken install must not break CNNs
        pass
    else:
        classes.append(TimmViT)
    return tuple(classes)


def vit_backbone(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """(dotted name, module) of the first vision-transformer backbone inside ``model`` (the
    model itself counts, name ""), or None."""
    classes = _vit_classes()
    for name, module in model.named_modules():
        if isinstance(module, classes):
            return name, module
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_timm(module: torch.nn.Module) -> bool:
    return hasattr(module, "blocks") and hasattr(module, "patch_embed")


@dataclass(frozen=True)
class FamilyLayout:
    """What a family's explainers need to know.

    Attributes:
        detect: the family's backbone inside a model, as (dotted name, module), or None.
        cam_layer: the default Grad-CAM layer (dotted name, from the model) given the backbone.
        grid: (h, w) of the patch-token grid given the backbone and the image size (H, W); None
            for conv maps.
        prefix_tokens: tokens in front of the patch tokens (class, distillation, registers).
        attention_blocks: dotted names of the blocks' attention modules, input to output.
        class_token: whether the first token is a class token.
    """

    detect: Callable[[torch.nn.Module], tuple[str, torch.nn.Module] | None]
    cam_layer: Callable[[str, torch.nn.Module], str]
    grid: Callable[[torch.nn.Module, tuple[int, int]], tuple[int, int]] | None = None
    prefix_tokens: Callable[[torch.nn.Module], int] | None = None
    attention_blocks: Callable[[str, torch.nn.Module], list[str]] | None = None
    class_token: Callable[[torch.nn.Module], bool] | None = None


def _vit_cam_layer(prefix: str, vit: torch.nn.Module) -> str:
    if _is_timm(vit):
        return _join(prefix, f"blocks.{len(vit.blocks) - 1}.norm1")
    last = list(vit.encoder.layers.named_children())[-1][0]  # encoder_layer_<L-1>
    return _join(prefix, f"encoder.layers.{last}.ln_1")


def _vit_grid(vit: torch.nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    if _is_timm(vit):  # timm knows its padding and, for hybrid stems, the backbone's stride
        h, w = vit.patch_embed.dynamic_feat_size(tuple(image_size))
        return int(h), int(w)
    return image_size[0] // vit.patch_size, image_size[1] // vit.patch_size


def _vit_prefix_tokens(vit: torch.nn.Module) -> int:
    return int(vit.num_prefix_tokens) if _is_timm(vit) else 1  # torchvision: the class token


def _vit_attention(prefix: str, vit: torch.nn.Module) -> list[str]:
    if _is_timm(vit):
        return [_join(prefix, f"blocks.{k}.attn") for k in range(len(vit.blocks))]
    names = [name for name, _ in vit.encoder.layers.named_children()]
    return [_join(prefix, f"encoder.layers.{name}.self_attention") for name in names]


def _cnn_cam_layer(prefix: str, model: torch.nn.Module) -> str:
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer and no vision-transformer blocks; give the "
                         "Grad-CAM layer name explicitly (layer = '<dotted module name>')")
    return convs[-1]


FAMILY_LAYOUTS: dict[str, FamilyLayout] = {  # checked in this order; "cnn" matches any model
    "vit": FamilyLayout(detect=vit_backbone, cam_layer=_vit_cam_layer, grid=_vit_grid,
                        prefix_tokens=_vit_prefix_tokens, attention_blocks=_vit_attention,
                        class_token=lambda vit: not _is_timm(vit) or vit.cls_token is not None),
    "cnn": FamilyLayout(detect=lambda model: ("", model), cam_layer=_cnn_cam_layer),
}


def family_of(model: torch.nn.Module) -> tuple[str, str, torch.nn.Module]:
    """(family, backbone name, backbone module) of a built model."""
    for family, layout in FAMILY_LAYOUTS.items():
        found = layout.detect(model)
        if found is not None:
            return family, *found
    raise AssertionError("unreachable: the cnn layout matches every model")


def model_family(model: torch.nn.Module) -> str:
    """The family of a built model: "vit" when it holds a vision-transformer backbone, else
    "cnn" (see :mod:`xaibench.models.families`)."""
    return family_of(model)[0]


def default_cam_layer(model: torch.nn.Module) -> str:
    """The dotted name of the layer Grad-CAM explains by default (module docstring): the model's
    ``cam_layer`` attribute when set, else its family's default.

    Raises:
        ValueError: when the model has neither a Conv2d nor transformer blocks.
    """
    name = getattr(model, "cam_layer", None)
    if name:
        return name
    family, prefix, backbone = family_of(model)
    return FAMILY_LAYOUTS[family].cam_layer(prefix, backbone)


def token_grid(model: torch.nn.Module, image_size: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) of a vision transformer's patch-token grid for images of ``image_size``; None for
    a CNN."""
    family, _, backbone = family_of(model)
    grid = FAMILY_LAYOUTS[family].grid
    return None if grid is None else grid(backbone, image_size)


def prefix_tokens(model: torch.nn.Module) -> int:
    """Tokens before the patch tokens in a vision transformer (class token, ...); 0 for a CNN."""
    family, _, backbone = family_of(model)
    count = FAMILY_LAYOUTS[family].prefix_tokens
    return 0 if count is None else count(backbone)


def has_class_token(model: torch.nn.Module) -> bool:
    """Whether a vision transformer's first token is a class token (False for a CNN)."""
    family, _, backbone = family_of(model)
    check = FAMILY_LAYOUTS[family].class_token
    return False if check is None else check(backbone)


def attention_modules(model: torch.nn.Module) -> list[str]:
    """Dotted names of a vision transformer's attention modules, first block first.

    Raises:
        ValueError: for a model without transformer blocks.
    """
    family, prefix, backbone = family_of(model)
    blocks = FAMILY_LAYOUTS[family].attention_blocks
    if blocks is None:
        raise ValueError(f"the model ({type(model).__name__}) has no vision-transformer blocks")
    return blocks(prefix, backbone)


def to_grid(output: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """A layer's output as an image-shaped map [B, C, h, w].

    Args:
        output: [B, C, h, w] (a conv map, returned as is) or [B, T, C] tokens, whose last h*w
            tokens are the patch tokens in row-major order; the T - h*w tokens before them
            (class, distillation, register tokens) are dropped.
        grid: (h, w) of the token grid (:func:`token_grid`); needed for token outputs.

    Raises:
        ValueError: for token outputs without a grid, or with fewer tokens than h*w.
    """
    if output.dim() == 4:
        return output
    if output.dim() != 3 or grid is None:
        raise ValueError(f"cannot read a layer output of shape {tuple(output.shape)} as an image map: "
                         f"expected [B, C, h, w] or [B, tokens, C] of a vision transformer")
    b, t, c = output.shape
    h, w = grid
    if t < h * w:
        raise ValueError(f"layer output has {t} tokens, fewer than the {h}x{w} patch grid")
    return output[:, t - h * w:].reshape(b, h, w, c).permute(0, 3, 1, 2)
