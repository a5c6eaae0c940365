"""SmoothGrad through captum's NoiseTunnel, seeded per image."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range
from xaibench.seeding import image_seed, seeded_global_rng


class SmoothGrad(Method):
    """SmoothGrad: the absolute gradient averaged over noisy copies of the image.

    Smilkov, Thorat, Kim, Viegas and Wattenberg, "SmoothGrad: removing noise by adding noise",
    ICML workshop 2017; computed by captum's ``NoiseTunnel`` around ``Saliency`` (absolute
    gradients). The Gaussian noise is drawn by captum from torch's global generator, so each image
    is explained with that generator seeded to ``image_seed(seed, image)`` and every RNG state
    restored afterwards (``seeded_global_rng``): the same image gets the same noise whatever batch
    it is in, and the caller's RNG state is untouched. Channel reduction: sum over channels of
    the averaged absolute gradient. Cost: ``n_samples`` forward+backward passes per image.

    Args:
        n_samples: noisy copies per image (the paper uses 50).
        noise_level: noise standard deviation as a fraction of the pixel range [0, 1] (the paper
            recommends 0.1 - 0.2).
        internal_batch_size: at most this many noisy copies per forward pass.
        seed: seeds the noise (together with each image's contents).
    """

    reduction = "sum over channels of the absolute gradient"

    def __init__(
        self,
        *,
        n_samples: int = 25,
        noise_level: float = 0.15,
        internal_batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        check_range("n_samples", n_samples, low=1)
        check_range("noise_level", noise_level, low=0.0)
        check_range("internal_batch_size", internal_batch_size, low=1)
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.internal_batch_size = internal_batch_size
        self.seed = seed

    @property
    def passes_per_image(self) -> int:
        return self.n_samples

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """SmoothGrad maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        x = images.detach()
        maps = []
        with eval_mode(model):
            tunnel = NoiseTunnel(CaptumSaliency(model))
            for i in range(x.shape[0]):
                with seeded_global_rng(image_seed(self.seed, x[i]), x.device):
                    grad = tunnel.attribute(
                        x[i:i + 1], nt_type="smoothgrad", nt_samples=self.n_samples,
                        nt_samples_batch_size=min(self.n_samples, self.internal_batch_size),
                        stdevs=self.noise_level, target=targets[i:i + 1], abs=True)
                maps.append(grad.detach().sum(1))
        return torch.cat(maps).float()
