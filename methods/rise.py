"""RISE: randomised input sampling for explanation."""

from __future__ import annotations

import torch

from xaibench.budget import rows_that_fit
from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, ParamError, check_range


def rise_grids(
    n_masks: int, grid_size: int, p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of RISE's masks, drawn once on CPU from ``generator``.

    Returns:
        grids: float [n_masks, grid_size, grid_size], 1 (keep) with probability ``p``, else 0.
        shifts: float [n_masks, 2] in [0, 1): each mask's crop offset as a fraction of a cell.
    """
    grids = (torch.rand(n_masks, grid_size, grid_size, generator=generator) < p).float()
    shifts = torch.rand(n_masks, 2, generator=generator)
    return grids, shifts


def rise_masks(grids: torch.Tensor, shifts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Smooth masks [N, H, W] in [0, 1] from binary grids [N, s, s] and offsets [N, 2].

    As in the paper: each s x s grid is upsampled bilinearly to (s + 1) * C, with cell size
    C = ceil(H / s) (and ceil(W / s)), and an H x W window is cropped at a random offset of less
    than one cell.
    """
    n, s, _ = grids.shape
    ch, cw = -(-height // s), -(-width // s)
    up = torch.nn.functional.interpolate(grids[:, None], size=((s + 1) * ch, (s + 1) * cw),
                                         mode="bilinear", align_corners=False)[:, 0]
    dy = (shifts[:, 0] * ch).long().clamp(max=ch - 1)
    dx = (shifts[:, 1] * cw).long().clamp(max=cw - 1)
    rows = (dy[:, None] + torch.arange(height, device=grids.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(width, device=grids.device))[:, None, :]
    return up[torch.arange(n, device=grids.device)[:, None, None], rows, cols]


def rise_saliency(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    grids: torch.Tensor,
    shifts: torch.Tensor,
    *,
    p: float,
    batch_size: int,
    max_rows: int | None = None,
) -> torch.Tensor:
    """RISE maps [B, H, W]: sum_i P(target | image * M_i) M_i / (N p), for images [B, 3, H, W].

    The masks (from ``grids`` [N, s, s] and ``shifts`` [N, 2]) are built and summed in chunks of
    ``batch_size // B`` masks (at least one); ``max_rows`` (at least B) splits a chunk's forward
    passes further, to at most that many masked images each, without changing the sums. The model
    is called as it is (put it in eval mode first). No gradients are recorded.
    """
    b, _, h, w = images.shape
    n = grids.shape[0]
    per_chunk = max(1, batch_size // b)
    per_pass = max(1, (max_rows or b * per_chunk) // b)
    saliency = torch.zeros(b, h, w, device=images.device)
    with torch.no_grad():
        for start in range(0, n, per_chunk):
            masks = rise_masks(grids[start:start + per_chunk].to(images.device),
                               shifts[start:start + per_chunk].to(images.device), h, w)  # [m, H, W]
            scores = torch.cat([mask_scores(model, images, targets, masks[i:i + per_pass])
                                for i in range(0, masks.shape[0], per_pass)], dim=1)  # [B, m]
            saliency += torch.einsum("bm,mhw->bhw", scores.float(), masks)
    return saliency / (n * p)


def mask_scores(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
    """P(target | image * mask) [B, m] for images [B, 3, H, W] and masks [m, H, W], in one pass."""
    b, m = images.shape[0], masks.shape[0]
    masked = (images[:, None] * masks[None, :, None]).reshape(b * m, *images.shape[1:])
    probs = model(masked).softmax(-1).reshape(b, m, -1)
    return probs.gather(2, targets.view(b, 1, 1).expand(b, m, 1))[..., 0]


class RISE(Method):
    """RISE: the target probability averaged over random smooth masks, weighting each mask.

    Petsiuk, Das and Saenko, "RISE: Randomized input sampling for explanation of black-box
    models", BMVC 2018. The same ``n_masks`` masks, drawn from a CPU ``torch.Generator`` seeded
    with ``seed``, explain every image, so results do not depend on the batch or the device's
    RNG; masked pixels are set to 0 (black). Channel reduction: none needed (masks are shared by
    the channels). Cost: ``n_masks`` forward passes per image (no backward).

    Args:
        n_masks: random masks per image (the paper uses 4000 for ResNet50).
        grid_size: the paper's s: cells per side of the random binary grid (cell size
            ceil(H / s) pixels).
        p: probability that a grid cell is kept.
        batch_size: at most this many masked images per forward pass (lowered further to fit
            ``[run] memory``, which does not change the maps).
        seed: seeds the masks.
    """

    reduction = "none: a mask covers all channels of a pixel"

    def __init__(
        self,
        *,
        n_masks: int = 4000,
        grid_size: int = 7,
        p: float = 0.5,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        check_range("n_masks", n_masks, low=1)
        check_range("grid_size", grid_size, low=1)
        check_range("batch_size", batch_size, low=1)
        if not 0.0 < p <= 1.0:
            raise ParamError("p", f"must be in (0, 1], got {p!r}")
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p = p
        self.batch_size = batch_size
        self.seed = seed

    @property
    def passes_per_image(self) -> int:
        return self.n_masks

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """RISE maps [B, H, W] for images [B, 3, H, W] and targets [B]."""
        grids, shifts = rise_grids(self.n_masks, self.grid_size, self.p,
                                   torch.Generator(device="cpu").manual_seed(self.seed))
        b, _, h, w = images.shape
        with eval_mode(model):
            rows = rows_that_fit(model, images[:1], grad=False, wanted=max(b, self.batch_size), least=b,
                                 extra_per_row=4 * h * w, what="rise", own="[run] batch_size")
            maps = rise_saliency(model, images.detach(), targets, grids, shifts, p=self.p,
                                 batch_size=self.batch_size, max_rows=rows)
        return maps.float()
