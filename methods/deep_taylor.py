"""Deep Taylor decomposition through zennit, plus the LRP plumbing shared with lrp_epsilon_plus."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range

if TYPE_CHECKING:  # zennit (and torchvision) are imported where used: torch stays deferred
    from zennit.canonizers import Canonizer
    from zennit.core import Composite


def _residual_sum(name: str, module: torch.nn.Module) -> dict | None:
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from zennit.layer import Sum
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    # Exact types only: a subclass (e.g. a gated block of a joint model) keeps its own forward.
    forwards = {BasicBlock: ResNetBasicBlockCanonizer.forward,
                Bottleneck: ResNetBottleneckCanonizer.forward}
    forward = forwards.get(type(module))
    return None if forward is None else {"forward": forward.__get__(module), "canonizer_sum": Sum()}


def canonizers() -> list[Canonizer]:
    """zennit canonizers for our backbones: batch norms merged into the conv or linear layer before
    them (ResNet, VGG-BN), and torchvision residual blocks' ``out += identity`` turned into a
    ``Sum`` module so that relevance is split between the two branches (zennit's ResNetCanonizer,
    restricted to exact BasicBlock / Bottleneck instances). Both are reverted on removal."""
    from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm

    return [SequentialMergeBatchNorm(), AttributeCanonizer(_residual_sum)]


def input_layer(model: torch.nn.Module) -> str:
    """Dotted name of the layer that receives the (normalised) pixels: the first Conv or Linear
    module of ``model.net`` (the backbone of a :class:`~xaibench.models.classifier.Classifier`, joint models
    included), or of ``model`` itself when it has no ``net``.

    Raises:
        ValueError: when there is no such layer.
    """
    root = getattr(model, "net", None)
    prefix = "net."
    if not isinstance(root, torch.nn.Module):
        root, prefix = model, ""
    for name, module in root.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            return prefix + name
    raise ValueError("the model has no Conv or Linear layer to start the relevance pass at")


def pixel_bounds(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) [1, 3, 1, 1] of what the input layer sees for pixels in [0, 1].

    A :class:`~xaibench.models.classifier.Classifier` normalises first, so the input layer sees
    (x - mean) / std: the box is [(0 - mean) / std, (1 - mean) / std] per channel. Without
    ``mean``/``std`` buffers the box is [0, 1].
    """
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        return (0.0 - mean) / std, (1.0 - mean) / std
    ones = torch.ones(1, 3, 1, 1)
    return 0 * ones, ones


def lrp_relevance(
    model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, composite: Composite
) -> torch.Tensor:
    """Relevance [B, 3, H, W] of each input element for the target logits, by zennit.

    The relevance pass starts from the target logit (one-hot times the output) and is computed
    with zennit's ``Gradient`` attributor while ``composite`` (rules and canonizers) is
    registered; the composite is removed afterwards, also on error. The model runs in eval mode,
    and, when it has a ``constant_gates()`` context manager (joint models), inside it, so that
    explanation gates are constants of the relevance pass. The relevance is read at the input of
    the backbone: the normalisation layer is an affine map per channel, so the pixel gradient is
    multiplied back by ``model.std`` (relevance is conserved, not divided by std).
    """
    from zennit.attribution import Gradient

    x = images.detach().requires_grad_(True)
    gates = getattr(model, "constant_gates", contextlib.nullcontext)
    with eval_mode(model), gates(), torch.enable_grad():
        try:
            composite.register(model)
            _, grad = Gradient(model, composite)(
                x, lambda out: out * torch.nn.functional.one_hot(targets, out.shape[1]).to(out.dtype))
        finally:
            composite.remove()
    std = getattr(model, "std", None)
    if isinstance(std, torch.Tensor):
        grad = grad * std
    return grad.detach()


class DeepTaylor(Method):
    """Deep Taylor decomposition: the z+ rule on hidden layers and the z^B (box) rule at the input.

    Montavon, Lapuschkin, Binder, Samek and Mueller, "Explaining nonlinear classification
    decisions with deep Taylor decomposition", Pattern Recognition 65, 2017; computed by zennit.
    Rules: z^B (``ZBox``) on the first Conv/Linear of the backbone (``input_layer``), whose input
    is the normalised image (x - mean) / std, so its box is the image of the pixel range [0, 1]:
    [(0 - mean) / std, (1 - mean) / std] per channel (``pixel_bounds``); z+ (``ZPlus``) on every
    other Conv and Linear layer; activations pass relevance through; average pools and residual
    sums split it in proportion to their inputs. Canonizers merge batch norms into the preceding
    layers and expose torchvision residual sums (``canonizers``), all reverted afterwards. The
    relevance pass starts from the target logit and is conserved down to the backbone's input
    (exactly for bias-free ReLU networks), where it is read (``lrp_relevance``). On a joint model
    the explanation gates are treated as constants (its ``constant_gates()`` context). Channel
    reduction: signed sum of relevance over channels (relevance is additive). Cost: one forward
    and one modified backward pass per image (each hooked layer re-runs its forward 2-3 times
    inside the backward).

    Args:
        stabilizer: added to denominators (with their sign) to avoid division by zero.
    """

    reduction = "signed sum of relevance over channels"
    requirement = ("a CNN (conv, linear, pooling, batch-norm and residual layers): its LRP rules have no "
                   "treatment of attention, softmax or LayerNorm, so vision transformers are out")
    families = ("cnn",)
    passes_per_image = 1

    def __init__(self, *, stabilizer: float = 1e-6) -> None:
        check_range("stabilizer", stabilizer, low=0.0)
        self.stabilizer = stabilizer

    def composite(self, model: torch.nn.Module) -> Composite:
        """The zennit composite for ``model``: z^B at its input layer, z+ elsewhere."""
        from zennit.composites import NameLayerMapComposite, layer_map_base
        from zennit.rules import ZBox, ZPlus
        from zennit.types import Convolution

        low, high = pixel_bounds(model)
        eps = self.stabilizer
        return NameLayerMapComposite(
            name_map=[((input_layer(model),), ZBox(low, high, stabilizer=eps))],
            layer_map=layer_map_base(eps) + [(Convolution, ZPlus(stabilizer=eps)),
                                             (torch.nn.Linear, ZPlus(stabilizer=eps))],
            canonizers=canonizers())

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Deep Taylor relevance maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        return lrp_relevance(model, images, targets, self.composite(model)).sum(1).float()
