"""Expected gradients: integrated gradients averaged over baselines drawn from the training images."""

from __future__ import annotations

import torch

from xaibench.budget import rows_that_fit
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range
from xaibench.seeding import image_generator


def draw_samples(image: torch.Tensor, n_samples: int, n_references: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of one image's expected gradients, from :func:`xaibench.seeding.image_generator`
    (so it depends on the image and ``seed`` only, never on the batch or the device).

    Returns:
        indices: long [n_samples], the reference image of each sample (uniform, with replacement).
        alphas: float32 [n_samples], each sample's point on the path, U(0, 1).
    """
    gen = image_generator(seed, image)
    indices = torch.randint(n_references, (n_samples,), generator=gen)
    alphas = torch.rand(n_samples, generator=gen)
    return indices, alphas


def as_pixels(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Images [N, 3, H, W] (uint8 0-255, or float in [0, 1]) as float32 in [0, 1] on ``device``."""
    if images.dtype == torch.uint8:
        return images.to(device).float().div_(255.0)
    return images.to(device, torch.float32)


def expected_gradients(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    references: torch.Tensor,
    indices: torch.Tensor,
    alphas: torch.Tensor,
    *,
    rows: int,
) -> torch.Tensor:
    """Expected gradients [B, 3, H, W]: mean_s (x - x'_s) * d f_t(x'_s + alpha_s (x - x'_s)) / dx.

    Args:
        model: called as it is (put it in eval mode first); gradients by ``torch.autograd.grad``.
        images: [B, 3, H, W] in [0, 1]; targets: [B].
        references: [N, 3, H, W] (uint8 or float, any device): the baselines' pool.
        indices: [B, S] long, the reference of sample s of image b; alphas: [B, S].
        rows: the most (image, sample) pairs per forward+backward pass.

    The B x S pairs run sample-major (all images' first sample, then the second, ...) in chunks of
    ``rows``; each pair's term is added to its image's sum in sample order, so the result does not
    depend on ``rows`` (nor on the batch), up to the model's own batch-size dependence.
    """
    b, n = indices.shape
    x = images.detach()
    total = torch.zeros_like(x, dtype=torch.float32)
    with torch.enable_grad():  # also when called under no_grad
        for start in range(0, b * n, rows):
            add_terms(model, x, targets, references, indices, alphas, total, start, min(start + rows, b * n))
    return total / n


def add_terms(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, references: torch.Tensor,
              indices: torch.Tensor, alphas: torch.Tensor, total: torch.Tensor, start: int, stop: int
              ) -> None:
    """Add the terms of (image, sample) pairs ``start`` .. ``stop`` - 1 (sample-major) to ``total``."""
    b, device = x.shape[0], x.device
    r = torch.arange(start, stop)
    img, s = r % b, torch.div(r, b, rounding_mode="floor")
    base = as_pixels(references[indices[img, s].to(references.device)], device)
    delta = x[img.to(device)] - base
    point = (base + alphas[img, s].to(device).view(-1, 1, 1, 1) * delta).requires_grad_(True)
    out = model(point)
    picked = out.gather(1, targets.to(device)[img.to(device)].view(-1, 1)).sum()
    terms = torch.autograd.grad(picked, point)[0].float() * delta
    for k in s.unique().tolist():  # ascending: each image's terms are added in sample order
        here = s == k
        total[img[here].to(device)] += terms[here.to(device)]


class ExpectedGradients(Method):
    """Expected gradients: integrated gradients with baselines drawn from the training images.

    Erion, Janizek, Sturmfels, Lundberg and Lee, "Improving performance of deep learning models
    with axiomatic attribution priors and expected gradients", Nature Machine Intelligence 2021.
    The attribution is the expectation of (x - x') * grad f_t(x' + alpha (x - x')) over
    baselines x' from the run's training split and alpha ~ U(0, 1), estimated with ``n_samples``
    (baseline, alpha) pairs per image, one of each per sample (the estimator of captum's
    ``GradientShap`` with no added noise, and of shap's ``GradientExplainer``). Completeness holds
    in expectation: the maps of an image sum to f_t(x) - E[f_t(x')]. Every draw comes from a CPU
    ``torch.Generator`` seeded from ``seed`` and the image's pixels
    (:func:`xaibench.seeding.image_generator`), so an image's map does not depend on its batch or
    on the device. Channel reduction: signed sum over the three colour channels (as for
    integrated gradients). Cost: ``n_samples`` forward+backward passes per image.

    Args:
        n_samples: (baseline, alpha) samples per image; default 200, shap's
            ``GradientExplainer.shap_values`` default (the paper's authors' implementation;
            captum's ``GradientShap`` defaults to 5).
        internal_batch_size: at most this many samples (images x samples) per forward+backward
            pass, lowered further to fit ``[run] memory``; results do not depend on it.
        seed: seeds the baselines' and alphas' draws (with each image's pixels).
    """

    reduction = "signed sum over channels"
    reference_split = "train"

    def __init__(self, *, n_samples: int = 200, internal_batch_size: int = 64, seed: int = 0) -> None:
        check_range("n_samples", n_samples, low=1)
        check_range("internal_batch_size", internal_batch_size, low=1)
        self.n_samples = n_samples
        self.internal_batch_size = internal_batch_size
        self.seed = seed
        self.references: torch.Tensor | None = None

    @property
    def passes_per_image(self) -> int:
        return self.n_samples

    def use_references(self, images: torch.Tensor) -> None:
        """Keep the training images [N, 3, H, W] (uint8 or float in [0, 1]) the baselines are
        drawn from (kept where they are; only the drawn ones move to the device)."""
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(f"expected_gradients: references must be [N>0, 3, H, W], got "
                             f"{tuple(images.shape)}")
        self.references = images

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Expected-gradients maps [B, H, W] for images [B, 3, H, W] and targets [B].

        Raises:
            ValueError: when no references were given (:meth:`use_references`) or their image
                size differs from the images'.
        """
        refs = self.references
        if refs is None:
            raise ValueError("expected_gradients needs reference images: call use_references(train "
                             "images) first (a run does it with its training split)")
        if refs.shape[1:] != images.shape[1:]:
            raise ValueError(f"expected_gradients: references {tuple(refs.shape[1:])} differ from the "
                             f"images {tuple(images.shape[1:])}")
        draws = [draw_samples(image, self.n_samples, refs.shape[0], self.seed) for image in images]
        indices, alphas = torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws])
        with eval_mode(model):
            rows = rows_that_fit(model, images[:1], grad=True, wanted=self.internal_batch_size,
                                 what="expected_gradients")
            maps = expected_gradients(model, images, targets, refs, indices, alphas, rows=rows)
        return maps.sum(1).float()
