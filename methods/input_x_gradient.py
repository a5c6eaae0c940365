"""Input x gradient: captum's ``InputXGradient``."""

from __future__ import annotations

from xaibench.methods.captum_source import CaptumMethod


class InputXGradient(CaptumMethod):
    """Input x gradient: the pixel values times the gradient of the target logit.

    Shrikumar, Greenside, Shcherbina and Kundaje, "Not just a black box: learning important
    features through propagating activation differences", arXiv:1605.01713, 2016; captum's
    ``InputXGradient`` (the method source ``captum:InputXGradient``) on the [0, 1] pixels
    (normalisation is inside the model, so black pixels get zero attribution). Channel reduction:
    signed sum over channels. Cost: one forward+backward pass per image. No hyperparameters.
    """

    library_class = "InputXGradient"
    channels = "sum"
    reduction = "signed sum over channels"
    passes_per_image = 1

    def __init__(self) -> None:
        super().__init__()
