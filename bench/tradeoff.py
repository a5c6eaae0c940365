"""The trade-off between the amount of activation and class re-identification (Kwon et al. 2021).

Kwon, Koo, Soh and Cho, "Inverse-based approach to explaining and visualizing convolutional
neural networks", IEEE TNNLS 2021, plot the rate at which the network re-identifies the
original class from a reduced input against how much of the activation that input keeps.

- The inverse-based method (their protocol): one point per layer; x = mean amount of activation
  of the layer's inverse (:func:`activation_amount`), y = the rate at which the inverse fed
  through the rest of the network keeps the original top-1 class.
- Every other method (OUR OWN protocol, not the paper's): the image times the normalised map
  |a| / max|a| (per image), keeping only pixels whose normalised value is >= t, fed to the model
  for a sweep of thresholds t; x = mean kept amount (the mean of the kept normalised map), y = the
  re-identification rate.

Entry point: :func:`tradeoff_table`; :func:`plot_tradeoff` draws the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

if TYPE_CHECKING:
    from xaibench.methods.inverse import Inverse

COLUMNS = ["method", "point", "activation", "reidentification"]
DEFAULT_THRESHOLDS = tuple(i / 10 for i in range(10))


def activation_amount(inverse: torch.Tensor, forward: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image amount of activation [B] in [0, 1] of an inverse at one layer.

    As in NOTES (Kwon et al.): the per-channel ratio |x_inv| / (|x| + eps), minus that channel's
    minimum over the positions, summed over channels, divided by its max over the positions
    (0 where it is all 0), averaged over the positions. Spatial layers are [B, C, H, W]; a vector
    layer [B, N] is read as one channel with N positions.
    """
    ratio = inverse.abs().float() / (forward.abs().float() + eps)
    ratio = ratio.flatten(2) if ratio.dim() > 2 else ratio[:, None]  # [B, C, positions]
    summed = (ratio - ratio.amin(2, keepdim=True)).sum(1)  # [B, positions]
    peak = summed.amax(1, keepdim=True)
    return torch.where(peak > 0, summed / peak.clamp(min=1e-30), torch.zeros_like(summed)).mean(1)


def normalised_maps(maps: torch.Tensor) -> torch.Tensor:
    """|a| / max|a| per image [B, H, W] in [0, 1] (an all-zero map stays 0)."""
    a = maps.abs().float()
    return a / a.flatten(1).amax(1).clamp(min=1e-30).view(-1, 1, 1)


@torch.no_grad()
def threshold_curve(
    model: torch.nn.Module,
    images: torch.Tensor,
    predictions: torch.Tensor,
    maps: torch.Tensor,
    thresholds: Sequence[float],
    *,
    batch_size: int = 64,
) -> list[tuple[float, float, float]]:
    """OUR OWN protocol for a non-inverse method: (t, mean kept amount, re-identification rate)
    per threshold t.

    The model sees x * n * [n >= t] with n = :func:`normalised_maps` (pixel space; removed pixels
    are black); the kept amount is the mean of n * [n >= t] over pixels and images; the rate is
    the fraction of images whose top-1 class is ``predictions`` (the clean images' top-1).
    Call with the model in eval mode.
    """
    n = normalised_maps(maps).to(images.device)
    rows = []
    for t in thresholds:
        kept = n * (n >= t)
        hits = 0
        for s in range(0, images.shape[0], batch_size):
            x = images[s:s + batch_size] * kept[s:s + batch_size, None].to(images.dtype)
            hits += (model(x).argmax(1) == predictions[s:s + batch_size]).sum().item()
        rows.append((float(t), kept.mean().item(), hits / images.shape[0]))
    return rows


def inverse_curve(layers: Sequence, predictions: torch.Tensor) -> list[tuple[str, float, float]]:
    """(layer name, mean amount of activation, re-identification rate) per layer, input first,
    from :meth:`xaibench.methods.inverse.Inverse.layers` (each layer with its ``logits``)."""
    return [(layer.name, activation_amount(layer.inverse, layer.forward).mean().item(),
             (layer.logits.argmax(1) == predictions).float().mean().item()) for layer in layers]


def tradeoff_table(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    maps: dict[str, torch.Tensor],
    *,
    inverse: Inverse | None = None,
    inverse_name: str = "inverse",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """The trade-off table: one row per (method, point).

    Args:
        model: the classifier (pixel-space wrapper); it leaves as it came.
        images: [B, 3, H, W] in [0, 1].
        targets: [B] the classes the maps explain; the inverse starts from them.
        maps: method name -> attribution maps [B, H, W]; each gets the threshold sweep (our own
            protocol). An entry named ``inverse_name`` is skipped when ``inverse`` is given.
        inverse: an :class:`~xaibench.methods.inverse.Inverse` to add its per-layer points (the
            paper's protocol), computed here; None adds none.
        inverse_name: the method name of those points.
        thresholds: the sweep, sorted ascending into the table (values in [0, 1]).

    Returns:
        DataFrame with columns method, point (the layer name for the inverse, the threshold
        otherwise), activation and reidentification (both in [0, 1]); the reference is the
        clean images' top-1 class (re-identification = same top-1).
    """
    from xaibench.modelstate import eval_mode

    ts = sorted(float(t) for t in thresholds)
    if any(not 0.0 <= t <= 1.0 for t in ts):
        raise ValueError(f"thresholds must be in [0, 1], got {list(thresholds)}")
    with eval_mode(model), torch.no_grad():
        predictions = model(images).argmax(1)
    rows: list[tuple] = []
    if inverse is not None:
        layers = inverse.layers(model, images, targets)
        rows += [(inverse_name, *row) for row in inverse_curve(layers, predictions)]
    for name, a in maps.items():
        if inverse is not None and name == inverse_name:
            continue
        if a.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"maps[{name!r}] has shape {tuple(a.shape)}, expected "
                             f"{(images.shape[0], *images.shape[2:])}")
        with eval_mode(model):
            rows += [(name, *row) for row in threshold_curve(model, images, predictions, a, ts)]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_tradeoff(table: pd.DataFrame, path: Path | str, *, title: str = "") -> pd.DataFrame:
    """Draw the trade-off (one line per method: re-identification against activation) as a PNG
    at ``path``; returns the table as plotted (the rows of :func:`tradeoff_table`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from xaibench.plots import save

    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"the trade-off table lacks column(s) {', '.join(missing)}")
    data = table[COLUMNS].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    sns.lineplot(data=data, x="activation", y="reidentification", hue="method", style="method",
                 markers=True, dashes=False, sort=False, estimator=None, ax=ax)
    ax.set(xlabel="mean amount of activation (kept amount for maps)",
           ylabel="class re-identification rate", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    note = ("inverse: per-layer points (Kwon et al. 2021); other methods: x * normalised map "
            "thresholded at t, our own protocol")
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=8)
    save(fig, Path(path))
    return data
