"""Deconvolution (DeconvNet): captum's ``Deconvolution``."""

from __future__ import annotations

from xaibench.methods.captum_source import ReLUBackprop


class Deconvolution(ReLUBackprop):
    """Deconvolution: backpropagation where every ReLU passes the rectified upstream gradient.

    Zeiler and Fergus, "Visualizing and understanding convolutional networks", ECCV 2014;
    captum's ``Deconvolution`` (the method source ``captum:Deconvolution``), which hooks every
    ``nn.ReLU`` module during the call and removes the hooks afterwards (also on error). ReLUs
    applied functionally are not changed.
    Channel reduction: sum over channels of the absolute value. Cost: one forward+backward pass
    per image. No hyperparameters.
    """

    library_class = "Deconvolution"
