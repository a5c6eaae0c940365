"""Occlusion through captum."""

from __future__ import annotations

import torch

from xaibench.budget import rows_that_fit
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, ParamError, check_range


def windows_per_image(height: int, width: int, window: int, stride: int) -> int:
    """How many occluded copies of an H x W image captum's Occlusion evaluates."""
    steps = [-(-(side - window) // stride) + 1 for side in (height, width)]
    return steps[0] * steps[1]


class Occlusion(Method):
    """Occlusion: how much the target logit drops when a square patch is set to a baseline value.

    Zeiler and Fergus, "Visualizing and understanding convolutional networks", ECCV 2014;
    computed by captum's ``Occlusion`` with a window covering all three channels, so every pixel
    gets the mean logit drop f_t(x) - f_t(x occluded) over the windows that cover it (positive =
    the patch supported the target). Channel reduction: none needed (the channels are occluded
    together and carry the same value; their mean is returned). Cost: forward passes only,
    windows_per_image(H, W, window, stride) + 1 per image, i.e. (ceil((H - window) / stride) + 1)
    x (ceil((W - window) / stride) + 1) + 1 (225 + 1 for 64 x 64 images with the defaults); it
    depends on the image size, so ``passes_per_image`` is None.

    Args:
        window: side of the square occluding patch, in pixels (must not exceed the image side).
        stride: step between patches, in pixels (at most ``window``, so every pixel is covered).
        baseline: the pixel value the patch is set to (0 = black, the default).
        internal_batch_size: at most this many occluded images per forward pass (at least one
            per image of the batch; lowered further to fit ``[run] memory``).
    """

    reduction = "none: channels occluded together (mean of identical channel values)"
    passes_per_image = None  # depends on the image size: see windows_per_image

    def __init__(
        self,
        *,
        window: int = 8,
        stride: int = 4,
        baseline: float = 0.0,
        internal_batch_size: int = 64,
    ) -> None:
        check_range("window", window, low=1)
        check_range("stride", stride, low=1)
        if stride > window:
            raise ParamError("stride", f"must be <= window ({window}), got {stride}")
        check_range("baseline", baseline, low=0.0, high=1.0)
        check_range("internal_batch_size", internal_batch_size, low=1)
        self.window = window
        self.stride = stride
        self.baseline = baseline
        self.internal_batch_size = internal_batch_size

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Occlusion maps [B, H, W] for images [B, 3, H, W] and targets [B].

        Raises:
            ValueError: when ``window`` exceeds the image height or width.
        """
        from captum.attr import Occlusion as CaptumOcclusion

        b, c, h, w = images.shape
        if self.window > min(h, w):
            raise ValueError(f"occlusion: window {self.window} exceeds the {h}x{w} images; "
                             f"set methods.<id>.window <= {min(h, w)}")
        with eval_mode(model):
            rows = rows_that_fit(model, images[:1], grad=False, wanted=max(b, self.internal_batch_size),
                                 least=b, what="occlusion", own="[run] batch_size")
            attr = CaptumOcclusion(model).attribute(
                images.detach(), sliding_window_shapes=(c, self.window, self.window),
                strides=(c, self.stride, self.stride), baselines=self.baseline, target=targets,
                perturbations_per_eval=rows // b)
        return attr.detach().mean(1).float()
