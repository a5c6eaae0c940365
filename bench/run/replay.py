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

Entry points: :func:`tradeoff_table` on tensors; :func:`replay_tradeoff` on a run folder (it
recomputes the forwards from the run's cache and writes ``plots/tradeoff.csv``, which the report
draws: :func:`xaibench.report.plots.tradeoff`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from xaibench.errors import RunError
from xaibench.io import from_half, load_checked, write_csv

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
    from xaibench.models.modelstate import eval_mode

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


def replay_tradeoff(run_dir: Path) -> Path:
    """Recompute the trade-off table of a finished run from its cache (data, models, maps; the
    inverse method's per-layer points when the run has a method that exposes them) and write it
    to ``<run>/plots/tradeoff.csv``; returns that path.

    Raises:
        RunError: the run's cache is gone (run the config again to rebuild it).
    """
    from xaibench import config
    from xaibench.run.execute import load_data, load_model
    from xaibench.run.plan import is_cached, plan

    m = json.loads((Path(run_dir) / "manifest.json").read_text())
    out = str(Path(run_dir).parent.parent)
    raw = {**m["raw_config"], "run": {**m["raw_config"].get("run", {}), "out": out}}
    the_plan = plan(config.parse(raw, name=m["config_name"], source=m["config_source"]))
    missing = [c for c in the_plan.cells if c.kind in ("data", "model", "explain") and not is_cached(c)]
    if missing:
        raise RunError(f"the trade-off needs the run's cache, but {missing[0].path} is missing; run "
                       f"the config again to rebuild it")
    device = torch.device(the_plan.device)
    splits, _ = load_data(the_plan)
    images = splits.test.batch(slice(None), device)[0]
    tables = []
    for model_cell in the_plan.of_kind("model"):
        model = load_model(the_plan, model_cell, splits, device).model
        maps, targets, inverse, inverse_name = {}, None, None, "inverse"
        for cell in the_plan.below(model_cell, "explain"):
            shards = [load_checked(p) for p in sorted(cell.path.glob("[0-9]*.pt"))]
            maps[cell.parts[1]] = torch.cat([from_half(s) for s in shards]).to(device)
            targets = torch.cat([s["targets"] for s in shards]).to(device)
            if callable(getattr(the_plan.method_of(cell), "layers", None)):  # per-layer inverses
                inverse, inverse_name = the_plan.method_of(cell), cell.parts[1]
        if targets is not None:
            table = tradeoff_table(model, images, targets, maps, inverse=inverse, inverse_name=inverse_name)
            tables.append(table.assign(model=model_cell.name))
    path = Path(run_dir) / "plots" / "tradeoff.csv"
    write_csv(path, pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS))
    return path
