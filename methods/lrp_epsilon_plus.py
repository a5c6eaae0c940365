"""LRP with the epsilon rule on dense layers and z+ on convolutions, through zennit."""

from __future__ import annotations

import torch

from xaibench.methods.deep_taylor import canonizers, lrp_relevance
from xaibench.plugins import Method, check_range


class LRPEpsilonPlus(Method):
    """LRP epsilon-plus: the epsilon rule on fully connected layers, z+ on every convolution.

    Bach, Binder, Montavon, Klauschen, Mueller and Samek, "On pixel-wise explanations for
    non-linear classifier decisions by layer-wise relevance propagation", PLoS ONE 2015; the
    composite is zennit's ``EpsilonPlus`` (Kohlbrenner et al., "Towards best practice in
    explaining neural network decisions with LRP", IJCNN 2020), with the same canonizers as
    ``deep_taylor`` (batch norms merged, residual sums exposed; reverted afterwards). The relevance
    pass starts from the target logit and is read at the backbone's input (the normalised image;
    see ``deep_taylor.lrp_relevance``). On a joint model the explanation gates are treated as
    constants (its ``constant_gates()`` context). Channel reduction: signed sum of relevance over
    channels. Cost: one forward and one modified backward pass per image.

    Args:
        epsilon: the epsilon of the dense layers' rule (zennit's default 1e-6).
        stabilizer: added to the other rules' denominators (with their sign).
    """

    reduction = "signed sum of relevance over channels"
    requirement = ("a CNN (conv, linear, pooling, batch-norm and residual layers): its LRP rules have no "
                   "treatment of attention, softmax or LayerNorm, so vision transformers are out")
    families = ("cnn",)
    passes_per_image = 1

    def __init__(self, *, epsilon: float = 1e-6, stabilizer: float = 1e-6) -> None:
        check_range("epsilon", epsilon, low=0.0)
        check_range("stabilizer", stabilizer, low=0.0)
        self.epsilon = epsilon
        self.stabilizer = stabilizer

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """LRP relevance maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from zennit.composites import EpsilonPlus

        composite = EpsilonPlus(epsilon=self.epsilon, stabilizer=self.stabilizer,
                                canonizers=canonizers())
        return lrp_relevance(model, images, targets, composite).sum(1).float()
