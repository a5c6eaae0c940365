"""The xML explainer: a small U-Net that maps an image to a [0, 1) relevance map."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Padding = Literal["zeros", "reflect"]


class ConvMod(nn.Sequential):
    """3x3 conv (pad 1, bias) -> ReLU -> 3x3 conv -> ReLU."""

    def __init__(self, cin: int, cout: int, padding: Padding = "zeros") -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, padding_mode=padding), nn.ReLU())


def upsampler(cin: int, cout: int, kind: Literal["transpose", "resize"],
              padding: Padding = "zeros") -> nn.Module:
    """A x2 up-sampling [B, cin, h, w] -> [B, cout, 2h, 2w].

    "transpose": ConvTranspose2d(k2, s2), the paper's; "resize": bilinear x2 resize then a 3x3 conv
    (pad 1), which avoids the checkerboard texture of strided transposed convolutions (Odena,
    Dumoulin and Olah, "Deconvolution and checkerboard artifacts", Distill 2016).
    """
    if kind == "transpose":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    if kind == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding))
    raise ValueError(f"upsample must be 'transpose' or 'resize', got {kind!r}")


class Explainer(nn.Module):
    """U-Net explainer of Rio-Torto et al. (PRL 2020), with skips added, not concatenated.

    Encoder ConvMod 3->w->2w->4w (w = ``width``, the paper's 32), each followed by a 2x2
    max-pool; decoder x2 up-sampling 4w->4w, 4w->2w, 2w->w, each followed by adding the encoder
    output of the same resolution and a ConvMod; head 1x1 conv w->1 -> BatchNorm -> tanh -> ReLU.

    Args:
        init_bias: initial BatchNorm shift (paper: 3.0), so the first maps are ~tanh(3) ~ 1
            everywhere and the gated classifier starts near identity.
        upsample: the decoder's up-sampling, "transpose" (the paper's stride-2 transposed
            convolution) or "resize" (bilinear resize + 3x3 conv, no checkerboard); see
            :func:`upsampler`.
        padding: how the 3x3 convolutions pad the border: "zeros" (the paper's) or "reflect".
            With zeros the border is the one place the explainer can tell apart without looking
            at the content, and on the synthetic data its maps grew a frame along the border
            (docs/joint.md); reflection padding removed most of it.
        width: the channels of the first stage (the paper's 32); the cost of a pass grows with
            its square.
    """

    def __init__(self, *, init_bias: float = 3.0,
                 upsample: Literal["transpose", "resize"] = "transpose", padding: Padding = "zeros",
                 width: int = 32) -> None:
        super().__init__()
        w = width
        self.enc1, self.enc2, self.enc3 = (ConvMod(3, w, padding), ConvMod(w, 2 * w, padding),
                                           ConvMod(2 * w, 4 * w, padding))
        self.pool = nn.MaxPool2d(2)
        self.up1, self.dec1 = upsampler(4 * w, 4 * w, upsample, padding), ConvMod(4 * w, 4 * w, padding)
        self.up2, self.dec2 = upsampler(4 * w, 2 * w, upsample, padding), ConvMod(2 * w, 2 * w, padding)
        self.up3, self.dec3 = upsampler(2 * w, w, upsample, padding), ConvMod(w, w, padding)
        self.head = nn.Conv2d(w, 1, 1)
        self.norm = nn.BatchNorm2d(1)
        nn.init.constant_(self.norm.bias, init_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [B, 1, H, W] in [0, 1) for input [B, 3, H, W]; H and W divisible by 8."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"the explainer needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d = self.dec1(self.up1(self.pool(e3)) + e3)
        d = self.dec2(self.up2(d) + e2)
        d = self.dec3(self.up3(d) + e1)
        return torch.relu(torch.tanh(self.norm(self.head(d))))
