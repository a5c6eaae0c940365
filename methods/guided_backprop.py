"""Guided backpropagation: captum's ``GuidedBackprop``."""

from __future__ import annotations

from xaibench.methods.captum_source import ReLUBackprop


class GuidedBackprop(ReLUBackprop):
    """Guided backpropagation: the input gradient with negative gradients cut at every ReLU.

    Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for simplicity: the all
    convolutional net", ICLR workshop 2015; captum's ``GuidedBackprop`` (the method source
    ``captum:GuidedBackprop``), which hooks
    every ``nn.ReLU`` module during the call and removes the hooks afterwards (also on error).
    ReLUs applied functionally (``F.relu``) are not guided. Channel reduction: sum over channels of
    the absolute value. Cost: one forward+backward pass per image. No hyperparameters.
    """

    library_class = "GuidedBackprop"
