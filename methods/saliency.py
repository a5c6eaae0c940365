"""Gradient saliency (vanilla gradient): captum's ``Saliency``."""

from __future__ import annotations

from xaibench.methods.captum_source import CaptumMethod


class Saliency(CaptumMethod):
    """Saliency map: the absolute gradient of the target logit with respect to the pixels.

    Simonyan, Vedaldi and Zisserman, "Deep inside convolutional networks: visualising image
    classification models and saliency maps", ICLR workshop 2014; captum's ``Saliency``
    (``abs=True``), the method source ``captum:Saliency`` with these settings. Channel reduction:
    maximum over channels of the absolute gradient (as in the paper). Cost: one forward+backward
    pass per image. No hyperparameters.
    """

    library_class = "Saliency"
    channels = "max_abs"
    reduction = "max over channels of the absolute gradient"
    passes_per_image = 1

    def __init__(self) -> None:
        super().__init__(abs=True)
