"""SmoothGrad: captum's ``NoiseTunnel`` around ``Saliency``, seeded per image."""

from __future__ import annotations

from xaibench.methods.captum_source import CaptumMethod
from xaibench.plugins import check_range


class SmoothGrad(CaptumMethod):
    """SmoothGrad: the absolute gradient averaged over noisy copies of the image.

    Smilkov, Thorat, Kim, Viegas and Wattenberg, "SmoothGrad: removing noise by adding noise",
    ICML workshop 2017; captum's ``NoiseTunnel`` around ``Saliency`` (absolute gradients), the
    method source ``captum:NoiseTunnel`` with these parameters. The Gaussian noise is drawn by
    captum from torch's global generator, so each image is explained with that generator seeded
    to ``image_seed(seed, image)`` and every RNG state restored afterwards: the same image gets
    the same noise whatever batch it is in, and the caller's RNG state is untouched. Channel
    reduction: sum over channels of the averaged absolute gradient. Cost: ``n_samples``
    forward+backward passes per image.

    Args:
        n_samples: noisy copies per image (the paper uses 50).
        noise_level: noise standard deviation as a fraction of the pixel range [0, 1] (the paper
            recommends 0.1 - 0.2).
        internal_batch_size: at most this many noisy copies per forward pass.
        seed: seeds the noise (together with each image's contents).
    """

    library_class = "NoiseTunnel"
    inner = "Saliency"
    stochastic = True
    channels = "abs_sum"
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
        super().__init__(seed=seed, nt_type="smoothgrad", nt_samples=n_samples,
                         nt_samples_batch_size=min(n_samples, internal_batch_size), stdevs=noise_level,
                         abs=True)
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.internal_batch_size = internal_batch_size

    @property
    def passes_per_image(self) -> int:
        return self.n_samples
