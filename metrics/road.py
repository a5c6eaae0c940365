"""ROAD: remove and debias, with noisy linear imputation (Rong et al. 2022), batched in torch.

The imputation of ROAD fills each removed pixel with the weighted mean of its 8 neighbours (direct
neighbours 1/6, diagonal ones 1/12; neighbours outside the image are left out and the weights of
the others renormalised), known pixels held fixed: one sparse linear system per image, which the
authors' road_evaluation and pytorch-grad-cam set up and solve with SciPy, image by image, on the
CPU. :func:`noisy_linear_impute` solves the systems of a whole batch at once on the
images' device, in float64, with a conjugate gradient on the pixel grid (the matrix is symmetric
positive definite: every removed region touches a known pixel unless the whole image is removed,
which is refused; the 8-neighbour stencil is two separable [1, 2, 1] passes over shifted views)::

    filled = noisy_linear_impute(images, removed)          # [B,3,H,W], [B,H,W] bool -> [B,3,H,W]

Two preconditioners: Jacobi (cheap iterations; scattered removals, such as ROAD on a noisy map,
converge in some 20-40), and, when an image has a large removed region (``LARGE_REGION`` of its
area in fully removed 8 x 8 blocks) or the batch has not converged after ``JACOBI_ITERATIONS``
(Jacobi would need hundreds of iterations there), a symmetric multigrid V-cycle (damped Jacobi
sweeps, cell-centred linear interpolation and its transpose, coarse cells unknown only where every
pixel under them is removed) that converges in some 10-15 iterations for any mask.

The iteration stops when every system's Jacobi-scaled residual (how far each removed pixel is from
the weighted mean of its neighbours) is below ``RESIDUAL_TOL`` (tighter on images larger than 224
px); the imputed values then agree with a direct sparse solve to about 1e-5 even when the removed
region is most of a 224 x 224 image (tests check 1e-4 against pytorch-grad-cam's
``NoisyLinearImputer``, on both solvers).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from xaibench.metrics.perturbation import Autocast, Score, class_scores, score_targets, step_map
from xaibench.plugins import Metric, MetricOutput, ParamError, check_range

__all__ = ["ROAD", "noisy_linear_impute", "removal_masks", "road_curves"]

# The Jacobi-scaled residual (pixel value units) at which the iteration stops, for images up to
# 224 px a side; it shrinks with the square of the side beyond (the system's smallest eigenvalue
# does), so the imputed values stay within about 1e-5 of the exact solution.
RESIDUAL_TOL = 1e-6
# Plain Jacobi-preconditioned iterations before the multigrid preconditioner takes over (scattered
# removals converge before: they are cheaper that way; large removed regions need the multigrid).
JACOBI_ITERATIONS = 50
# The multigrid from the start when an image has at least this share of its area in fully removed
# LARGE_BLOCK x LARGE_BLOCK blocks (one large region: the Jacobi iterations would be wasted).
LARGE_BLOCK = 8
LARGE_REGION = 0.05
# Multigrid V-cycle: damped-Jacobi weight, sweeps before and after each coarse correction, and the
# side at or below which a level is the coarsest.
OMEGA = 2 / 3
SWEEPS = 1
COARSEST = 4
DEFAULT_PERCENTAGES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _stencil(padded: torch.Tensor, buffers: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> torch.Tensor:
    """[1, 2, 1] x [1, 2, 1] over the interior of a zero-padded [..., H+2, W+2] -> [..., H, W].

    That is 12 x the 8-neighbour weighted sum (1/6 direct, 1/12 diagonal) plus 4 x the centre.
    ``buffers``: preallocated [..., H+2, W] and [..., H, W] outputs (the second is returned).
    """
    h, out = buffers if buffers is not None else (None, None)
    h = torch.add(padded[..., :, :-2], padded[..., :, 2:], out=h)
    h.add_(padded[..., :, 1:-1], alpha=2)
    out = torch.add(h[..., :-2, :], h[..., 2:, :], out=out)
    return out.add_(h[..., 1:-1, :], alpha=2)


def _dot(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Per-system dot products of [B, C, H', W'] tensors -> [B, C, 1, 1] (``scratch``: a
    preallocated buffer for the products; faster on CPU than vecdot, which allocates more)."""
    return torch.mul(a, b, out=scratch).sum((-2, -1), keepdim=True)


def _prolong_last(coarse: torch.Tensor, n: int) -> torch.Tensor:
    """Cell-centred linear interpolation along the last axis, [..., ceil(n/2)] -> [..., n]: fine
    cells 2j and 2j+1 get 3/4 of coarse cell j and 1/4 of its neighbour on their side (the edge
    cells' own value beyond the ends)."""
    left = torch.cat([coarse[..., :1], coarse[..., :-1]], -1)
    right = torch.cat([coarse[..., 1:], coarse[..., -1:]], -1)
    return torch.stack([0.75 * coarse + 0.25 * left, 0.75 * coarse + 0.25 * right], -1).flatten(-2)[..., :n]


def _restrict_last(fine: torch.Tensor, nc: int) -> torch.Tensor:
    """The exact adjoint (transpose) of :func:`_prolong_last`, [..., n] -> [..., nc]."""
    if fine.shape[-1] < 2 * nc:
        fine = torch.nn.functional.pad(fine, (0, 2 * nc - fine.shape[-1]))
    even, odd = fine[..., 0::2], fine[..., 1::2]
    coarse = 0.75 * (even + odd)
    coarse[..., :-1] += 0.25 * even[..., 1:]
    coarse[..., 1:] += 0.25 * odd[..., :-1]
    coarse[..., :1] += 0.25 * even[..., :1]
    coarse[..., -1:] += 0.25 * odd[..., -1:]
    return coarse


def _prolong(coarse: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return _prolong_last(_prolong_last(coarse, w).transpose(-1, -2), h).transpose(-1, -2)


def _restrict(fine: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return _restrict_last(_restrict_last(fine, w).transpose(-1, -2), h).transpose(-1, -2)


class _Level:
    """One grid of the multigrid hierarchy: the 8-neighbour operator on the cells of ``mask``.

    Cells are unknown where ``mask`` is 1; the others are held at zero (known pixels on the finest
    grid; coarse cells with a known pixel under them). Unknown regions always border a held cell
    (an image keeps a known pixel), so every level's operator is positive definite.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask  # [B, 1, h, w] float64
        self.h, self.w = mask.shape[-2:]
        s12 = _stencil(torch.nn.functional.pad(torch.ones_like(mask[:1]), (1, 1, 1, 1))) - 4
        self.diag = s12 + 4
        self.inv = mask / s12 * OMEGA

    def smooth(self, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """One damped-Jacobi sweep on 12 A v = r, in place: v += omega D^-1 (r - 12 A v)."""
        t = torch.addcmul(_stencil(torch.nn.functional.pad(v, (1, 1, 1, 1))), self.diag, v, value=-1).add_(r)
        return v.addcmul_(self.inv, t)

    def residual(self, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        t = torch.addcmul(_stencil(torch.nn.functional.pad(v, (1, 1, 1, 1))), self.diag, v, value=-1).add_(r)
        return t.mul_(self.mask)


def _hierarchy(removed: torch.Tensor) -> list[_Level]:
    """Grids halved (ceil) down to ``COARSEST`` px; a coarse cell is unknown iff every pixel under
    it is (a min-pool), so coarse problems keep their held cells; stops early when none is left."""
    levels = [_Level(removed)]
    while min(levels[-1].h, levels[-1].w) > COARSEST:
        coarse = -torch.nn.functional.max_pool2d(-levels[-1].mask, 2, ceil_mode=True)
        if not bool(coarse.any()):
            break
        levels.append(_Level(coarse))
    return levels


def _vcycle(levels: list[_Level], r: torch.Tensor, level: int = 0) -> torch.Tensor:
    """A symmetric V-cycle from zero (the same sweeps before and after, restriction = the transpose
    of prolongation): a fixed symmetric positive definite preconditioner for the conjugate gradient.
    The coarsest grid gets 4 x its side in sweeps."""
    grid = levels[level]
    v = grid.inv * r
    if level == len(levels) - 1:
        for _ in range(4 * max(grid.h, grid.w) - 1):
            grid.smooth(v, r)
        return v
    for _ in range(SWEEPS - 1):
        grid.smooth(v, r)
    coarse = levels[level + 1]
    rc = _restrict(grid.residual(v, r), coarse.h, coarse.w).mul_(coarse.mask)
    v.addcmul_(_prolong(_vcycle(levels, rc, level + 1), grid.h, grid.w), grid.mask)
    for _ in range(SWEEPS):
        grid.smooth(v, r)
    return v


def _multigrid_cg(u: torch.Tensor, r: torch.Tensor, removed: torch.Tensor, limit: float, max_iter: int
                  ) -> torch.Tensor:
    """Conjugate gradient on 12 A u = 12 b preconditioned by :func:`_vcycle`, from ``u`` with
    residual ``r`` ([B, C, H, W]); stops on the same Jacobi-scaled residual as the plain loop."""
    levels = _hierarchy(removed)
    grid = levels[0]
    jacobi = grid.mask / (grid.diag - 4)
    z = _vcycle(levels, r)
    p = z.clone()
    rz = _dot(r, z)
    for _ in range(max_iter):
        active = _dot(r, r * jacobi) > limit
        if not bool(active.any()):
            return u
        q = grid.diag * p - _stencil(torch.nn.functional.pad(p, (1, 1, 1, 1)))
        q.mul_(grid.mask)  # 12 A p
        pq = _dot(p, q)
        step = active & (pq > 0)
        alpha = torch.where(step, rz / torch.where(step, pq, 1.0), 0.0)  # converged systems stay put
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, q, value=-1)
        z = _vcycle(levels, r)
        rz_new = _dot(r, z)
        beta = torch.where(step, rz_new / torch.where(step, rz, 1.0), 0.0)
        p = z.addcmul_(beta, p)
        rz = torch.where(step, rz_new, rz)
    raise RuntimeError(f"noisy_linear_impute: the conjugate gradient did not converge in {max_iter} "
                       f"multigrid iterations")


def _linear_impute(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The noise-free imputation in float64: [B, C, H, W] with every removed pixel solved for.

    Every vector of the iteration lives on the zero-padded [B, C, H+2, W+2] grid (contiguous, the
    border zero), so the stencil reads shifted views and the updates and dot products are plain
    passes over contiguous memory. u, p and z are zero on known pixels; r and q are not (their
    values there are never used: every product with them is masked by z, p or the preconditioner).
    """
    b, c, h, w = images.shape
    x = images.to(torch.float64)
    pad = (1, 1, 1, 1)
    m = torch.nn.functional.pad(removed[:, None].to(torch.float64), pad)  # [B, 1, H+2, W+2], 0 on the border
    s12 = _stencil(torch.nn.functional.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), pad)) - 4
    diag = s12 + 4  # 12 x (sum of in-image neighbour weights) + 4: 12 A = diag * I - stencil
    inv = (m[..., 1:-1, 1:-1] / s12).expand(b, c, h, w)  # Jacobi preconditioner, zero on known pixels
    inv = torch.nn.functional.pad(inv, pad)
    # System 12 A u = 12 b on the removed pixels, u zero on known ones: A u = s u - (weighted sum
    # of removed neighbours), b = weighted sum of known neighbours.
    r = torch.zeros(b, c, h + 2, w + 2, dtype=x.dtype, device=x.device)
    torch.mul(_stencil(torch.nn.functional.pad(x * (1 - m[..., 1:-1, 1:-1]), pad)), m[..., 1:-1, 1:-1],
              out=r[..., 1:-1, 1:-1])
    u, q, scratch = torch.zeros_like(r), torch.zeros_like(r), torch.empty_like(r)
    buffers = (x.new_empty(b, c, h + 2, w), x.new_empty(b, c, h, w))  # the stencil's, reused
    z = r * inv
    p = z.clone()
    rz = _dot(r, z)
    # r.z = sum 12 s z^2 >= 5 |z|^2 (s >= 5/12 at a corner): rz <= 5 tol^2 bounds every |z| by tol
    tol = RESIDUAL_TOL * min(1.0, (224 / max(h, w)) ** 2)
    limit = 5 * tol * tol
    blocks = -torch.nn.functional.max_pool2d(-m[..., 1:-1, 1:-1], LARGE_BLOCK, ceil_mode=True)
    if bool(blocks.mean((1, 2, 3)).ge(LARGE_REGION).any()):
        u = _multigrid_cg(u[..., 1:-1, 1:-1].contiguous(), r[..., 1:-1, 1:-1].contiguous(),
                          m[..., 1:-1, 1:-1].contiguous(), limit, max_iter=500)
        return torch.where(removed[:, None], u, x)
    check = 1 if x.device.type == "cpu" else 10  # host syncs on an accelerator cost more
    it = 0
    while True:
        active = rz > limit
        if it % check == 0 and not bool(active.any()):
            break
        if it >= JACOBI_ITERATIONS:  # a large removed region: go on with the multigrid
            u = _multigrid_cg(u[..., 1:-1, 1:-1].contiguous(), r[..., 1:-1, 1:-1].contiguous(),
                              m[..., 1:-1, 1:-1].contiguous(), limit, max_iter=500)
            return torch.where(removed[:, None], u, x)
        inner = p[..., 1:-1, 1:-1]
        torch.addcmul(_stencil(p, buffers), diag, inner, value=-1, out=q[..., 1:-1, 1:-1])  # -12 A p
        pq = _dot(p, q, scratch)
        step = active & (pq < 0)
        alpha = torch.where(step, rz / torch.where(step, -pq, 1.0), 0.0)  # converged systems stay put
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, q)
        torch.mul(r, inv, out=z)
        rz_new = _dot(r, z, scratch)
        beta = torch.where(step, rz_new / torch.where(step, rz, 1.0), 0.0)
        torch.addcmul(z, beta, p, out=p)
        rz = torch.where(step, rz_new, rz)
        it += 1
    return torch.where(removed[:, None], u[..., 1:-1, 1:-1], x)


def noisy_linear_impute(images: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation of a whole batch at once, on the images' device.

    Every removed pixel becomes the weighted mean of its 8 neighbours (direct 1/6, diagonal 1/12,
    neighbours outside the image left out and the rest renormalised), removed neighbours included,
    solved jointly per image and channel (the authors' road_evaluation ``NoisyLinearImputer``,
    also pytorch-grad-cam's); then ``noise`` x N(0, 1) is added to the imputed values. Known
    pixels are returned unchanged, bit for bit.

    Args:
        images: [B, C, H, W] float (xaibench: pixel space, [0, 1]).
        removed: [B, H, W] bool, True where a pixel is removed. Every image must keep at least
            one pixel.
        noise: standard deviation of the Gaussian noise on imputed values, in the images' units
            (0 = plain linear imputation; pytorch-grad-cam's default 0.01 is applied to the
            model's input tensor, usually normalised; xaibench images are pixels in [0, 1]).
        generator: source of the noise, drawn as one [B, C, H, W] standard normal tensor on the
            generator's device (so CPU and CUDA agree); default: a CPU generator seeded 0.

    Returns:
        [B, C, H, W] in the images' dtype and device. Deterministic for a given batch; the solver
        (iterations, preconditioner) is chosen for the batch as a whole, so an image's imputed
        values may differ within the tolerance (~1e-5) when it is imputed with other images.
    """
    if images.dim() != 4 or removed.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"expected images [B,C,H,W] and removed [B,H,W]; got {tuple(images.shape)} "
                         f"and {tuple(removed.shape)}")
    if removed.dtype != torch.bool:
        raise ValueError(f"removed must be a bool tensor, got {removed.dtype}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    removed = removed.to(images.device)
    if images.shape[0] and bool(removed.flatten(1).all(1).any()):
        raise ValueError("every pixel of an image is removed: linear imputation needs at least one "
                         "known pixel")
    filled = _linear_impute(images, removed)
    if noise > 0:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        eps = torch.randn(images.shape, generator=gen, device=gen.device, dtype=torch.float64)
        filled = filled + noise * eps.to(images.device)
    return torch.where(removed[:, None], filled.to(images.dtype), images)


def removal_masks(attributions: torch.Tensor, percentages: tuple[float, ...], *, order: str = "morf"
                  ) -> torch.Tensor:
    """The removed pixels at each percentage, [P, B, H, W] bool.

    Pixels are ranked once by attribution, descending for "morf" and ascending for "lerf", ties by
    pixel index (:func:`xaibench.metrics.perturbation.step_map` with 1-px patches); at percentage p
    the first floor(p * H * W) ranked pixels are removed (the authors' ``int(H * W * p)``).
    """
    _, h, w = attributions.shape
    rank = step_map(attributions, 1, order=order)  # 1 = removed first
    counts = [math.floor(p * h * w + 1e-9) for p in percentages]
    return torch.stack([rank <= k for k in counts])


def road_curves(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                targets: torch.Tensor, *, percentages: tuple[float, ...] = DEFAULT_PERCENTAGES,
                orders: tuple[str, ...] = ("morf", "lerf"), noise: float = 0.01,
                score: Score = "softmax", generator: torch.Generator | None = None,
                chunk_size: int = 128, autocast: Autocast = "off", channels_last: bool = False
                ) -> dict[str, torch.Tensor]:
    """ROAD curves: the score after removing and imputing each percentage of pixels, per order.

    For each percentage (in order), the removal masks of all ``orders`` are imputed together
    (len(orders) x B images, :func:`noisy_linear_impute` on at most ``chunk_size`` at a time, which
    bounds the solver's memory), the noise added (one [len(orders) x B, 3, H, W] standard normal
    draw from ``generator`` per percentage, default a CPU generator seeded 0) and the images scored
    by :func:`class_scores`.

    Args:
        model: images [N, 3, H, W] in [0, 1] -> logits [N, C], called under inference mode.
        images: [B, 3, H, W]; attributions: [B, H, W]; targets: [B].
        percentages: fractions of pixels removed, each in [0, 1).
        score: "softmax" of ``targets``, their "logit", or "predicted": the softmax of the class
            predicted on the clean image.

    Returns:
        order -> [B, len(percentages) + 1] float32; column 0 is the clean image's score.
    """
    b = images.shape[0]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    classes, engine_score = score_targets(model, images, targets, score, chunk_size=chunk_size,
                                          autocast=autocast, channels_last=channels_last)
    options = dict(score=engine_score, chunk_size=chunk_size, autocast=autocast, channels_last=channels_last)
    clean = class_scores(model, images, classes, **options)
    masks = {o: removal_masks(attributions.to(images.device), percentages, order=o) for o in orders}
    columns: dict[str, list[torch.Tensor]] = {o: [clean] for o in orders}
    stacked = images.repeat(len(orders), 1, 1, 1)
    for i in range(len(percentages)):
        removed = torch.cat([masks[o][i] for o in orders])
        filled = torch.cat([noisy_linear_impute(stacked[k:k + chunk_size], removed[k:k + chunk_size])
                            for k in range(0, stacked.shape[0], chunk_size)])
        if noise > 0:  # drawn for all len(orders) x B images at once: independent of chunk_size
            eps = torch.randn(stacked.shape, generator=gen, device=gen.device).to(images.device)
            filled = torch.where(removed[:, None], filled + noise * eps, filled)
        scores = class_scores(model, filled, classes.repeat(len(orders)), **options)
        for j, o in enumerate(orders):
            columns[o].append(scores[j * b:(j + 1) * b])
    return {o: torch.stack(cols, 1) for o, cols in columns.items()}


class ROAD(Metric):
    """ROAD (remove and debias): the score as pixels are removed and linearly imputed.

    Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation Strategy
    for Attribution Methods", ICML 2022. Pixels are ranked once by attribution (ties by pixel
    index); at each removal percentage p the floor(p * H * W) most relevant (MoRF) or least
    relevant (LeRF) pixels are removed and filled by noisy linear imputation
    (:func:`noisy_linear_impute`: the authors' 8-neighbour weights, Gaussian noise from ``seed``),
    which avoids the out-of-distribution artefacts (and the mask-shape leak) of black or blurred
    patches; the model's score is taken on each imputed image.

    Scores (means over the percentages, i.e. the area under the curve; with the default 10..90%
    the averages of pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` /
    ``ROADLeastRelevantFirstAverage`` plus the clean score): ``road`` = MoRF (lower is better: a
    good explanation removes the evidence first), ``lerf`` (higher is better: removing the least
    relevant pixels should not matter) and ``gap`` = LeRF - MoRF (higher is better; twice
    pytorch-grad-cam's ``ROADCombined``). Curves ``morf`` and ``lerf``, [B, P + 1] with column 0
    the clean image. ``lerf = false`` skips the LeRF pass.

    Args:
        percentages: fractions of the pixels removed, each in [0, 1) (the authors': 0.1 .. 0.9).
        noise: standard deviation of the imputation noise, in pixel units ([0, 1] images).
        score: "softmax" probability of the run's target class, "predicted": of the class
            predicted on the clean image, or the target's "logit".
        lerf: also compute the LeRF curve and the gap.
        seed: seeds the imputation noise (a generator seeded afresh for each batch).
        chunk_size: the most imputed images the model sees in one forward pass, and the most
            images imputed in one solve.
        autocast: "off" (fp32), "bf16" or "fp16" forward passes (the imputation is float64).
        channels_last: feed channels-last inputs (a CUDA speed-up for convnets).
    """

    family = "faithfulness"
    higher_is_better = False
    directions: ClassVar[dict[str, bool | None]] = {"lerf": True, "gap": True}

    def __init__(
        self,
        *,
        percentages: tuple[float, ...] = DEFAULT_PERCENTAGES,
        noise: float = 0.01,
        score: Score = "softmax",
        lerf: bool = True,
        seed: int = 0,
        chunk_size: int = 128,
        autocast: Autocast = "off",
        channels_last: bool = False,
    ) -> None:
        if not percentages:
            raise ParamError("percentages", "give at least one removal percentage")
        for p in percentages:
            check_range("percentages", p, low=0.0)
            if p >= 1:
                raise ParamError("percentages", f"each must be below 1 (imputation needs a known "
                                                f"pixel), got {p!r}")
        check_range("noise", noise, low=0.0)
        check_range("chunk_size", chunk_size, low=1)
        self.percentages = tuple(percentages)
        self.noise = noise
        self.score = score
        self.lerf = lerf
        self.seed = seed
        self.chunk_size = chunk_size
        self.autocast = autocast
        self.channels_last = channels_last

    def evaluate(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        attributions: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> MetricOutput:
        orders = ("morf", "lerf") if self.lerf else ("morf",)
        curves = road_curves(model, images, attributions, targets, percentages=self.percentages,
                             orders=orders, noise=self.noise, score=self.score,
                             generator=torch.Generator().manual_seed(self.seed),
                             chunk_size=self.chunk_size, autocast=self.autocast,
                             channels_last=self.channels_last)
        out = MetricOutput(scores={"road": curves["morf"][:, 1:].mean(1)}, curves={"morf": curves["morf"]})
        if self.lerf:
            out.scores["lerf"] = curves["lerf"][:, 1:].mean(1)
            out.scores["gap"] = out.scores["lerf"] - out.scores["road"]
            out.curves["lerf"] = curves["lerf"]
        return out
