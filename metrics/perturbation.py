"""The batched perturbation engine behind every perturbation metric (AOPC, deletion, insertion).

One call computes, for every image, the model's score after 0, 1, ..., ``steps`` cumulative
perturbations of its patches, ordered once from the unperturbed attribution::

    curves = perturbation_curves(model, images, attributions, targets, patch_size=8, steps=16)
    curves.shape == (B, 17)          # curves[:, 0] is the score of the clean image

How it stays fast and bounded:

- Each pixel gets the step at which it is perturbed (a [B, H, W] integer map, from one sort of the
  patch sums). The input of (image b, step k) is then a single ``torch.where(step_map[b] <= k,
  substrate[b], images[b])``: no Python loop over steps or patches, everything on the images'
  device.
- The B x (steps + 1) (image, step) pairs are flattened (step-major: all clean images first) and
  pushed through the model in chunks of at most ``chunk_size`` inputs under
  ``torch.inference_mode``. Peak memory is set by ``chunk_size`` (plus the B-sized inputs,
  step map and substrate), never by B x steps; in a run, the chunks are also kept within
  ``[run] memory`` (:mod:`xaibench.budget`), which changes no score: every row is scored alone.

Patch grid (sizes that ``patch_size`` does not divide): the grid of ceil(H/p) x ceil(W/p) patches
is centred on the image and the border patches are cut short, on both sides: with H = 10 and
p = 4 the three rows of patches are 3, 4 and 3 pixels high (the grid's 12 - 10 = 2 surplus rows
are split floor/ceil between top and bottom; with W = 7, the columns are 4 and 3 wide).
This is the rule of Quantus' RegionPerturbation (it pads the image by the same amounts and crops
after perturbing), so curves agree with it on any image size. Patches are numbered row-major; a
patch's relevance is the sum of the attribution over its (possibly cut-short) pixels.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

import torch

from xaibench.plugins import Metric, MetricOutput, ParamError, check_range

Order = Literal["morf", "lerf", "random"]
Score = Literal["softmax", "predicted", "logit"]
SubstrateName = Literal["black", "white", "gray", "mean", "blur", "uniform"]
Autocast = Literal["off", "bf16", "fp16"]

ORDERS: tuple[str, ...] = ("morf", "lerf", "random")
SCORES: tuple[str, ...] = ("softmax", "predicted", "logit")
SUBSTRATES: tuple[str, ...] = ("black", "white", "gray", "mean", "blur", "uniform")
AUTOCAST: tuple[str, ...] = ("off", "bf16", "fp16")

# The colour of the "mean" substrate for models without a ``mean`` buffer: the ImageNet
# normalisation mean, which every built-in model (xaibench.models.classifier.Classifier) uses.
FALLBACK_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
CONSTANT_COLOURS = {"black": 0.0, "white": 1.0, "gray": 0.5}

if TYPE_CHECKING:  # an alias for annotations only: torch stays deferred until a curve is computed
    SubstrateSpec = str | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


# -- the patch grid ------------------------------------------------------------------------------


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Rows and columns of the patch grid: ceil(H / p) x ceil(W / p)."""
    return -(-height // patch_size), -(-width // patch_size)


def grid_offset(size: int, patch_size: int) -> int:
    """Pixels the centred grid starts before the image on one axis (the top or left padding).

    The grid covers ceil(size / p) * p pixels; the surplus is split floor (before) / ceil (after).
    """
    return (-size % patch_size) // 2


def patch_index_map(height: int, width: int, patch_size: int, device: torch.device | str = "cpu"
                    ) -> torch.Tensor:
    """The patch each pixel belongs to: [H, W] long, patches numbered row-major on the grid."""
    rows = (torch.arange(height, device=device) + grid_offset(height, patch_size)) // patch_size
    cols = (torch.arange(width, device=device) + grid_offset(width, patch_size)) // patch_size
    return rows[:, None] * patch_grid(height, width, patch_size)[1] + cols[None, :]


def patch_sums(attributions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Summed relevance per patch, [B, P] float64 (P = grid rows x columns, row-major).

    Args:
        attributions: [B, H, W].
    """
    b, h, w = attributions.shape
    gh, gw = patch_grid(h, w, patch_size)
    top, left = grid_offset(h, patch_size), grid_offset(w, patch_size)
    padded = torch.nn.functional.pad(attributions.double(),
                                     (left, gw * patch_size - w - left, top, gh * patch_size - h - top))
    return padded.view(b, gh, patch_size, gw, patch_size).sum((2, 4)).flatten(1)


def patch_order(attributions: torch.Tensor, patch_size: int, *, order: Order = "morf",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Patch indices [B, P] in the order they are perturbed.

    "morf": descending summed relevance; "lerf": ascending; ties broken by patch index (lower
    first) in both. "random": a uniform random permutation per image, drawn from ``generator``
    (on the generator's device, so CPU and CUDA runs agree; default: a CPU generator seeded 0).

    Args:
        attributions: [B, H, W]; ranked once, as given (signed).
    """
    sums = patch_sums(attributions, patch_size)
    if order == "random":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        keys = torch.rand(sums.shape, generator=gen, device=gen.device).to(sums.device)
        return torch.argsort(keys, dim=1, stable=True)
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    return torch.sort(sums, dim=1, descending=order == "morf", stable=True).indices


def step_map(attributions: torch.Tensor, patch_size: int, *, order: Order = "morf",
             patches_per_step: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """The step at which each pixel is perturbed, [B, H, W] int32 (1 = the first step).

    Pixel (i, j) of image b is perturbed in x^(k) iff ``step_map[b, i, j] <= k``: step k perturbs
    the patches at positions (k-1)*n .. k*n-1 of :func:`patch_order` (n = ``patches_per_step``).
    """
    b, h, w = attributions.shape
    ordered = patch_order(attributions, patch_size, order=order, generator=generator)
    rank = torch.empty_like(ordered)
    rank.scatter_(1, ordered, torch.arange(ordered.shape[1], device=ordered.device).expand_as(ordered))
    pixel_patch = patch_index_map(h, w, patch_size, attributions.device).flatten()
    steps = torch.div(rank[:, pixel_patch], patches_per_step, rounding_mode="floor") + 1
    return steps.view(b, h, w).to(torch.int32)


def max_steps(height: int, width: int, patch_size: int, patches_per_step: int = 1) -> int:
    """The number of steps that perturbs every patch: ceil(P / patches_per_step)."""
    gh, gw = patch_grid(height, width, patch_size)
    return math.ceil(gh * gw / patches_per_step)


# -- substrates ----------------------------------------------------------------------------------


def mean_colour(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """The model's normalisation mean colour [1, 3, 1, 1] (its ``mean`` buffer), or
    :data:`FALLBACK_MEAN` (the ImageNet mean) for a model without one."""
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.numel() == 3:
        return mean.detach().reshape(1, 3, 1, 1).to(device=device, dtype=torch.float32)
    return torch.tensor(FALLBACK_MEAN, device=device).view(1, 3, 1, 1)


def gaussian_blur(images: torch.Tensor, *, kernel: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of [B, C, H, W] (torchvision's ``gaussian_blur``: separable, reflect padding;
    the kernel is exp(-x^2 / (2 sigma^2)) at x = -(k-1)/2 .. (k-1)/2, normalised to sum 1)."""
    from torchvision.transforms.v2 import functional as TF

    if kernel % 2 != 1:
        raise ValueError(f"blur kernel must be odd, got {kernel}")
    if kernel // 2 >= min(images.shape[2:]):
        raise ValueError(f"a {kernel}x{kernel} blur kernel needs images larger than {kernel // 2} "
                         f"pixels a side (reflect padding); got {tuple(images.shape[2:])}")
    return TF.gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


def make_substrate(
    model: torch.nn.Module,
    images: torch.Tensor,
    substrate: SubstrateSpec,
    *,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The replacement values, broadcastable to ``images`` [B, 3, H, W] and on their device.

    Args:
        model: read only for "mean" (its normalisation mean colour).
        images: [B, 3, H, W] in [0, 1].
        substrate: a name, a tensor broadcastable to ``images``, or a callable
            ``images -> tensor`` (it must be deterministic):

            - "black" 0, "white" 1, "gray" 0.5 (every channel);
            - "mean": the model's normalisation mean colour (RISE's "zero in normalised space"),
              :data:`FALLBACK_MEAN` for a model without a ``mean`` buffer;
            - "blur": each image Gaussian-blurred (``blur_kernel``, ``blur_sigma``);
            - "uniform": per-pixel, per-channel U(0, 1) noise, drawn once per image from
              ``generator`` (on the generator's device; default: a CPU generator seeded 0).
        blur_kernel, blur_sigma: the Gaussian blur's odd kernel size and standard deviation.
        generator: the source of the "uniform" noise.

    Returns:
        A 4-d tensor: [1, 3, 1, 1] for constant colours, [B, 3, H, W] for "blur" and "uniform";
        a tensor or a callable's result is given leading singleton dimensions up to 4-d.
    """
    device, dtype = images.device, images.dtype
    if callable(substrate) and not isinstance(substrate, torch.Tensor):
        values = substrate(images)
    elif isinstance(substrate, torch.Tensor):
        values = substrate
    elif substrate in CONSTANT_COLOURS:
        values = torch.full((1, 3, 1, 1), CONSTANT_COLOURS[substrate], device=device, dtype=dtype)
    elif substrate == "mean":
        values = mean_colour(model, device).to(dtype)
    elif substrate == "blur":
        values = gaussian_blur(images, kernel=blur_kernel, sigma=blur_sigma)
    elif substrate == "uniform":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        values = torch.rand(images.shape, generator=gen, device=gen.device, dtype=dtype)
    else:
        raise ValueError(f"substrate must be one of {', '.join(SUBSTRATES)}, a tensor or a callable; "
                         f"got {substrate!r}")
    values = values.to(device=device, dtype=dtype)
    try:
        torch.broadcast_shapes(values.shape, images.shape)
    except RuntimeError:
        raise ValueError(f"substrate of shape {tuple(values.shape)} does not broadcast to the "
                         f"images' {tuple(images.shape)}") from None
    return values.reshape((1,) * (4 - values.dim()) + tuple(values.shape))


# -- forward passes in chunks --------------------------------------------------------------------


@contextlib.contextmanager
def _forward_context(device: torch.device, autocast: Autocast) -> Iterator[None]:
    with torch.inference_mode():
        if autocast == "off":
            yield
        else:
            dtype = torch.bfloat16 if autocast == "bf16" else torch.float16
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield


def _check_options(chunk_size: int, autocast: str) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if autocast not in AUTOCAST:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST)}; got {autocast!r}")


def fitting(model: torch.nn.Module, images: torch.Tensor, chunk_size: int, what: str) -> int:
    """``chunk_size``, lowered to the inputs like ``images[:1]`` that fit the run's memory budget
    (:func:`xaibench.budget.rows_that_fit`; no budget outside a run). Rows are independent, so
    the chunking never changes a score."""
    from xaibench.budget import rows_that_fit

    if images.shape[0] == 0:
        return chunk_size
    return rows_that_fit(model, images[:1], grad=False, wanted=chunk_size, what=what,
                         extra_per_row=images[0, 0].numel())


def predict(model: torch.nn.Module, images: torch.Tensor, *, chunk_size: int = 128,
            autocast: Autocast = "off", channels_last: bool = False) -> torch.Tensor:
    """The class the model predicts for each image, [B] long, in chunks under inference mode."""
    _check_options(chunk_size, autocast)
    chunk_size = fitting(model, images, chunk_size, "predict")
    out = torch.empty(images.shape[0], dtype=torch.long, device=images.device)
    with _forward_context(images.device, autocast):
        for start in range(0, images.shape[0], chunk_size):
            x = images[start:start + chunk_size]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out[start:start + chunk_size] = model(x).argmax(1)
    return out


def class_scores(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor, *,
                 score: Literal["softmax", "logit"] = "softmax", chunk_size: int = 128,
                 autocast: Autocast = "off", channels_last: bool = False) -> torch.Tensor:
    """The model's score of ``classes`` [N] on ready-made inputs [N, 3, H, W], [N] float32.

    The scoring of :func:`perturbation_curves` for inputs that are not substrate pastes (ROAD's
    imputed images): "softmax" probability or "logit" of each row's class, computed in float32
    from the logits, in chunks of at most ``chunk_size`` inputs under inference mode.
    """
    _check_options(chunk_size, autocast)
    if score not in ("softmax", "logit"):
        raise ValueError(f"score must be 'softmax' or 'logit'; got {score!r}")
    chunk_size = fitting(model, images, chunk_size, "class scores")
    classes = classes.to(device=images.device, dtype=torch.long)
    out = torch.empty(images.shape[0], dtype=torch.float32, device=images.device)
    with _forward_context(images.device, autocast):
        for start in range(0, images.shape[0], chunk_size):
            x = images[start:start + chunk_size]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            picked = classes[start:start + chunk_size].unsqueeze(1)
            s = logits.gather(1, picked) if score == "logit" else logits.softmax(1).gather(1, picked)
            out[start:start + chunk_size] = s.squeeze(1)
    return out


def generated_scores(model: torch.nn.Module, rows: int, make: Callable[[torch.Tensor], torch.Tensor],
                     classes: torch.Tensor, *, score: Literal["softmax", "logit"] = "softmax",
                     chunk_size: int = 128, autocast: Autocast = "off", channels_last: bool = False
                     ) -> torch.Tensor:
    """The model's score of ``classes[r]`` on input ``make(r)``, for rows r = 0..rows-1, [rows] float32.

    The inputs are made chunk by chunk (``make`` gets the chunk's row indices [N] long on the
    device of ``classes`` and returns [N, 3, H, W]), so memory is set by ``chunk_size``, never by
    the number of rows; scoring as in :func:`class_scores`.
    """
    _check_options(chunk_size, autocast)
    if score not in ("softmax", "logit"):
        raise ValueError(f"score must be 'softmax' or 'logit'; got {score!r}")
    device = classes.device
    out = torch.empty(rows, dtype=torch.float32, device=device)
    with _forward_context(device, autocast):
        for start in range(0, rows, chunk_size):
            r = torch.arange(start, min(start + chunk_size, rows), device=device)
            x = make(r)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            picked = classes[r].unsqueeze(1)
            s = logits.gather(1, picked) if score == "logit" else logits.softmax(1).gather(1, picked)
            out[start:start + r.numel()] = s.squeeze(1)
    return out


def perturbation_curves(
    model: torch.nn.Module,
    images: torch.Tensor,
    attributions: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    patch_size: int,
    steps: int,
    order: Order = "morf",
    substrate: SubstrateSpec = "black",
    score: Score = "softmax",
    chunk_size: int = 128,
    generator: torch.Generator | None = None,
    patches_per_step: int = 1,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    autocast: Autocast = "off",
    channels_last: bool = False,
) -> torch.Tensor:
    """The model's score after 0..steps cumulative patch perturbations, for every image.

    Patches (``patch_size`` x ``patch_size``, on the centred grid of the module docstring; 1 =
    pixels) are ranked once from the unperturbed attribution (:func:`patch_order`); step k
    replaces the pixels of the first k * ``patches_per_step`` ranked patches by the substrate.

    Args:
        model: images [N, 3, H, W] in [0, 1] -> logits [N, C]. Called under inference mode
            (in the mode it is in: put it in eval mode first) and never changed.
        images: [B, 3, H, W] in [0, 1].
        attributions: [B, H, W].
        targets: [B] classes scored by "softmax" and "logit" (unused by "predicted").
        patch_size: side of the square patches in pixels.
        steps: L, the number of perturbation steps (0 .. :func:`max_steps`).
        order: "morf" (most relevant first), "lerf" (least relevant first) or "random".
        substrate: see :func:`make_substrate`: "black", "white", "gray", "mean", "blur",
            "uniform", a tensor broadcastable to ``images`` or a callable ``images -> tensor``.
        score: "softmax" probability of ``targets``, "predicted": softmax probability of the
            class predicted on the clean image, or the "logit" of ``targets``.
        chunk_size: the most inputs the model sees in one forward pass (lowered further to fit
            the run's ``[run] memory``; no budget outside a run).
        generator: the source of the "random" order and "uniform" substrate (the substrate is
            drawn first); default: a CPU generator seeded 0. Draws are made on the generator's
            device, so CPU and CUDA give the same curves.
        patches_per_step: patches perturbed per step (RISE deletion: pixels per step).
        blur_kernel, blur_sigma: the "blur" substrate's odd kernel size and sigma.
        autocast: "bf16" or "fp16" runs the forward passes under torch.autocast on the images'
            device (scores are computed in float32 from the logits); "off" (default) is fp32.
        channels_last: feed the model channels-last inputs (a CUDA speed-up for convnets;
            the model's own parameters are left as they are).

    Returns:
        [B, steps + 1] float32: column k is the score of x^(k); column 0 is the clean image.
    """
    if images.dim() != 4 or attributions.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expected images [B,3,H,W] and attributions [B,H,W]; got "
                         f"{tuple(images.shape)} and {tuple(attributions.shape)}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
    if score != "predicted" and targets is None:
        raise ValueError(f"score {score!r} needs targets")
    if patch_size < 1 or patches_per_step < 1:
        raise ValueError("patch_size and patches_per_step must be >= 1")
    _check_options(chunk_size, autocast)
    b, _, h, w = images.shape
    most = max_steps(h, w, patch_size, patches_per_step)
    if not 0 <= steps <= most:
        raise ValueError(f"steps must be in [0, {most}] for {patch_size}-px patches on {h}x{w} "
                         f"images ({patches_per_step} per step); got {steps}")
    device = images.device
    chunk_size = fitting(model, images, chunk_size, "perturbation curves")
    values = make_substrate(model, images, substrate, blur_kernel=blur_kernel, blur_sigma=blur_sigma,
                            generator=generator)
    when = step_map(attributions.to(device), patch_size, order=order, patches_per_step=patches_per_step,
                    generator=generator)
    return step_map_curves(model, images, when, targets, steps=steps, values=values, score=score,
                           chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)


def step_map_curves(
    model: torch.nn.Module,
    images: torch.Tensor,
    when: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    steps: int,
    values: torch.Tensor,
    score: Score = "softmax",
    chunk_size: int = 128,
    autocast: Autocast = "off",
    channels_last: bool = False,
) -> torch.Tensor:
    """The model's score on x^(k) = where(when <= k, values, images) for k = 0..steps, every image.

    The core of :func:`perturbation_curves`, for any order of perturbation given as a per-pixel
    step map (e.g. superpixels, or patches in raster order): the B x (steps + 1) inputs are made
    on the fly and scored in chunks of at most ``chunk_size`` under inference mode.

    Args:
        model: images [N, 3, H, W] in [0, 1] -> logits [N, C]; never changed.
        images: [B, 3, H, W] in [0, 1].
        when: [B, H, W] integer: the step at which each pixel is replaced (1 = the first step).
        targets: [B] classes scored by "softmax" and "logit" (unused by "predicted").
        steps: L, the last step scored.
        values: the replacement, [1, 3, 1, 1] or [B, 3, H, W] (:func:`make_substrate`).
        score, chunk_size, autocast, channels_last: as in :func:`perturbation_curves`.

    Returns:
        [B, steps + 1] float32: column k is the score of x^(k); column 0 is the clean image.
    """
    b = images.shape[0]
    device = images.device
    when = when.to(device=device, dtype=torch.int32)
    per_image = values.shape[0] != 1
    if targets is not None:
        targets = targets.to(device=device, dtype=torch.long)
    chosen = torch.empty(b, dtype=torch.long, device=device) if score == "predicted" else targets

    rows = b * (steps + 1)  # (image, step) pairs, step-major: row r is image r % B at step r // B
    out = torch.empty(rows, dtype=torch.float32, device=device)
    with _forward_context(device, autocast):
        for start in range(0, rows, chunk_size):
            r = torch.arange(start, min(start + chunk_size, rows), device=device)
            img, k = r % b, torch.div(r, b, rounding_mode="floor")
            perturbed = (when[img] <= k.view(-1, 1, 1).to(torch.int32)).unsqueeze(1)
            x = torch.where(perturbed, values[img] if per_image else values, images[img])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            if score == "predicted":
                clean = k == 0  # rows of clean images come first, so every row's class is known
                chosen[img[clean]] = logits[clean].argmax(1)
            picked = chosen[img].unsqueeze(1)
            s = logits.gather(1, picked) if score == "logit" else logits.softmax(1).gather(1, picked)
            out[start:start + r.numel()] = s.squeeze(1)
    return out.view(steps + 1, b).t().contiguous()


def aopc(curves: torch.Tensor) -> torch.Tensor:
    """AOPC per image: 1/(L+1) * sum_{k=0..L} (f(x^(0)) - f(x^(k))), for curves [B, L+1] -> [B]."""
    return (curves[:, :1] - curves).mean(1)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under curves [B, n] on [0, 1] (n >= 2 equally spaced points) -> [B]:
    (sum(s) - s_0/2 - s_last/2) / (n - 1) (Petsiuk et al.'s deletion/insertion AUC)."""
    n = curves.shape[1]
    if n < 2:
        raise ValueError("an AUC needs at least 2 points per curve")
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (n - 1)


# -- what perturbation metrics ask of the engine ------------------------------------------------


def check_blur(kernel: int, sigma: float) -> None:
    """Raise ParamError unless the blur kernel is odd and positive and sigma positive."""
    if kernel < 1 or kernel % 2 == 0:
        raise ParamError("blur_kernel", f"must be an odd number >= 1, got {kernel}")
    if sigma <= 0:
        raise ParamError("blur_sigma", f"must be > 0, got {sigma}")


def check_blur_fits(substrate: str, kernel: int, height: int, width: int) -> None:
    """Raise ParamError when a "blur" substrate's kernel is too large for reflect padding."""
    if substrate == "blur" and kernel // 2 >= min(height, width):
        raise ParamError("blur_kernel", f"{kernel} is too large for {height}x{width} images; use at "
                                        f"most {2 * min(height, width) - 1}")


def score_targets(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, score: Score,
                  *, chunk_size: int, autocast: Autocast, channels_last: bool
                  ) -> tuple[torch.Tensor, Score]:
    """(targets, engine score) that score ``score`` relative to the clean ``images``: "predicted"
    becomes the softmax of the class the model predicts on them."""
    if score != "predicted":
        return targets, score
    return predict(model, images, chunk_size=chunk_size, autocast=autocast,
                   channels_last=channels_last), "softmax"


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """The engine options every patch-perturbation metric takes, declared once (a metric's own
    parameters are the fields it adds). See :func:`perturbation_curves`.

    Args:
        substrate: what replaces a patch: "black", "white", "gray" (0.5), "mean" (the model's
            normalisation mean colour), "blur" (the image blurred) or "uniform" (per-pixel
            U(0,1) RGB noise, drawn once per image from ``seed``).
        blur_kernel: odd kernel size of the "blur" substrate.
        blur_sigma: standard deviation (pixels) of the "blur" substrate.
        score: "softmax" probability of the run's target class, "predicted": of the class
            predicted on the clean image, or the target's "logit".
        seed: seeds the "uniform" substrate (a generator seeded afresh for each batch, so the
            noise of an image depends on its position in its batch, never on the global RNG).
        chunk_size: the most perturbed images the model sees in one forward pass.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes (a CUDA speed-up).
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    substrate: SubstrateName = "black"
    blur_kernel: int = 11
    blur_sigma: float = 5.0
    score: Score = "softmax"
    seed: int = 0
    chunk_size: int = 128
    autocast: Autocast = "off"
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_range("chunk_size", self.chunk_size, low=1)
        check_blur(self.blur_kernel, self.blur_sigma)

    def request(self, *, patch_size: int, steps: int, order: Order = "morf", patches_per_step: int = 1,
                insertion: bool = False) -> CurveRequest:
        """A :class:`CurveRequest` with these settings and the given geometry."""
        engine = {f.name: getattr(self, f.name) for f in fields(EngineSettings)}
        return CurveRequest(patch_size=patch_size, steps=steps, order=order,
                            patches_per_step=patches_per_step, insertion=insertion, **engine)


@dataclass(frozen=True, kw_only=True)
class CurveRequest(EngineSettings):
    """One engine call, everything but the data. Equal requests on the same maps give the same
    curve, so a run computes a curve once however many metrics ask for it: the request is the
    curve's key. ``insertion`` starts from the substrate and puts the clean pixels back (RISE
    insertion); otherwise the substrate replaces the ranked patches."""

    patch_size: int
    steps: int
    order: Order = "morf"
    patches_per_step: int = 1
    insertion: bool = False

    def compute(self, model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """The curves [B, steps + 1] (:func:`perturbation_curves`)."""
        options = dict(chunk_size=self.chunk_size, autocast=self.autocast, channels_last=self.channels_last)
        geometry = dict(patch_size=self.patch_size, steps=self.steps, order=self.order,
                        patches_per_step=self.patches_per_step)
        generator = torch.Generator().manual_seed(self.seed)
        if not self.insertion:
            return perturbation_curves(model, images, attributions, targets, **geometry,
                                       substrate=self.substrate, score=self.score, generator=generator,
                                       blur_kernel=self.blur_kernel, blur_sigma=self.blur_sigma, **options)
        start = make_substrate(model, images, self.substrate, blur_kernel=self.blur_kernel,
                               blur_sigma=self.blur_sigma, generator=generator)
        chosen, score = score_targets(model, images, targets, self.score, **options)
        return perturbation_curves(model, start.expand_as(images), attributions, chosen, **geometry,
                                   substrate=images, score=score, **options)


class CurveMetric(Metric):
    """A metric computed from engine curves only: it names the curves it needs
    (:meth:`requests`) and turns them into scores (:meth:`from_curves`). The runner computes each
    distinct request once per (model, method) and shares it between metrics."""

    def requests(self, height: int, width: int) -> dict[str, CurveRequest]:
        """Curve name -> request, for images of this size."""
        raise NotImplementedError

    def from_curves(self, curves: dict[str, torch.Tensor]) -> MetricOutput:
        """Scores (and the curves to report) from the requested curves, each [B, steps + 1]."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                 attributions: torch.Tensor, masks: torch.Tensor | None) -> MetricOutput:
        requests = self.requests(*images.shape[2:])
        return self.from_curves({name: r.compute(model, images, attributions, targets)
                                 for name, r in requests.items()})
