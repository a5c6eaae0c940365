"""Plots (seaborn, PNG): one function per figure, each taking tidy data and an output path."""

from __future__ import annotations

import io
import typing
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from xaibench.io import atomic_write  # noqa: E402


def save(fig: plt.Figure, path: Path) -> None:
    """Save ``fig`` as PNG atomically (reproducible bytes: no timestamp metadata) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def mean_curves(curves: pd.DataFrame, path: Path, *, title: str, seed: int = 0) -> None:
    """Mean perturbation curve per method with a 95% bootstrap band, one panel per model.

    Args:
        curves: long format with columns model, method, index, step, value.
    """
    lines_per_model(curves, "step", "value", path, title=title, seed=seed,
                    xlabel="perturbation step k", ylabel="f(x^(k))")


def lines_per_model(data: pd.DataFrame, x: str, y: str, path: Path, *, title: str, seed: int,
                    xlabel: str, ylabel: str) -> None:
    """Mean of ``y`` over images against ``x``, one line per method with a 95% bootstrap band,
    one panel per model."""
    models = list(dict.fromkeys(data["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models):
        sns.lineplot(data=data[data["model"] == model], x=x, y=y, hue="method",
                     hue_order=sorted(data["method"].unique()),
                     errorbar=("ci", 95), n_boot=200, seed=seed, ax=ax)
        ax.set(title=model, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
    legend_outside(fig, axes[0])
    fig.suptitle(title, y=1.04)
    save(fig, path)


def legend_outside(fig: plt.Figure, axes: typing.Iterable[plt.Axes]) -> None:
    """One legend for the figure, right of the panels, instead of one per panel over the data."""
    handles, labels = {}, []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="center left",
                   bbox_to_anchor=(1.0, 0.5), frameon=False)


def aopc_by_steps(curves: pd.DataFrame) -> pd.DataFrame:
    """Per-image AOPC after L steps, for every L: AOPC_L = 1/(L+1) sum_{k=0..L} f(x^(0)) - f(x^(k)).

    Args:
        curves: long MoRF curves with columns model, method, index, step, value.
    Returns:
        long format with columns model, method, index, L, aopc.
    """
    c = curves.sort_values(["model", "method", "index", "step"])
    keys = [c["model"], c["method"], c["index"]]
    drop = c.groupby(keys, sort=False)["value"].transform("first") - c["value"]
    aopc = drop.groupby(keys, sort=False).cumsum() / (c["step"] + 1)
    return pd.DataFrame({"model": c["model"], "method": c["method"], "index": c["index"],
                         "L": c["step"], "aopc": aopc})


def aopc_vs_steps(curves: pd.DataFrame, path: Path, *, title: str, seed: int = 0) -> None:
    """AOPC as a function of the number of perturbation steps L, per method (95% band over
    images), one panel per model."""
    lines_per_model(aopc_by_steps(curves), "L", "aopc", path, title=title, seed=seed,
                    xlabel="steps L", ylabel="AOPC after L steps")


def aopc_grid(grid: pd.DataFrame, path: Path, *, title: str) -> None:
    """The xML paper's figure: mean AOPC over patch sizes, one panel per (model, substrate).

    Args:
        grid: columns model, method, substrate, patch_size, aopc (the mean over images).
    """
    models = list(dict.fromkeys(grid["model"]))
    substrates = list(dict.fromkeys(grid["substrate"]))
    fig, axes = plt.subplots(len(models), len(substrates), squeeze=False, sharey=True,
                             figsize=(3.2 * len(substrates), 2.8 * len(models)))
    for row, model in zip(axes, models):
        for ax, substrate in zip(row, substrates):
            part = grid[(grid["model"] == model) & (grid["substrate"] == substrate)]
            sns.lineplot(data=part, x="patch_size", y="aopc", hue="method", marker="o", ax=ax,
                         hue_order=sorted(grid["method"].unique()))
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(grid["patch_size"].unique()),
                          labels=[str(p) for p in sorted(grid["patch_size"].unique())])
            ax.set(title=f"{model}, {substrate}", xlabel="patch size (px)", ylabel="AOPC")
            ax.grid(alpha=0.3)
    legend_outside(fig, axes.ravel())
    fig.suptitle(title, y=1.02)
    save(fig, path)


def metric_bars(scores: pd.DataFrame, path: Path, *, title: str, ylabel: str, seed: int = 0) -> None:
    """Mean per-image score per method with a 95% bootstrap interval, one colour per model
    (e.g. POMPOM).

    Args:
        scores: long per-image scores of one metric: columns model, method, value.
    """
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * scores["method"].nunique() + 2), 3.6))
    sns.barplot(data=scores, x="method", y="value", hue="model", errorbar=("ci", 95),
                n_boot=200, seed=seed, ax=ax)
    ax.set(xlabel="", ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=30)
    ax.grid(alpha=0.3, axis="y")
    legend_outside(fig, [ax])
    save(fig, path)


def agreement_heatmap(matrix: pd.DataFrame, path: Path, *, title: str) -> None:
    """Kendall tau between the method rankings of each pair of metrics (1 = same order)."""
    size = 1.0 + 0.9 * len(matrix)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(matrix, vmin=-1, vmax=1, center=0, cmap="vlag", annot=True, fmt=".2f",
                square=True, cbar_kws={"label": "Kendall tau"}, ax=ax)
    ax.set(title=title)
    save(fig, path)


def cost_quality(data: pd.DataFrame, path: Path, *, title: str) -> None:
    """Seconds per image to explain against the mean rank (lower is better), per method.

    Args:
        data: columns model, method, explain_s_per_image, mean_rank.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    d = data.assign(explain_s_per_image=data["explain_s_per_image"].clip(lower=1e-5))
    sns.scatterplot(data=d, x="explain_s_per_image", y="mean_rank", hue="method", style="model",
                    hue_order=sorted(d["method"].unique()),
                    s=70, ax=ax)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set(xlabel="seconds per image to explain (log)", ylabel="mean rank (better up)", title=title)
    ax.grid(alpha=0.3)
    legend_outside(fig, [ax])
    save(fig, path)


def gallery(images: np.ndarray, masks: np.ndarray | None, maps: dict[str, np.ndarray], path: Path,
            *, title: str, row_labels: list[str]) -> None:
    """Test images (with the ground-truth region outlined) and one column per method.

    Args:
        images: uint8 [K, 3, H, W]; masks: bool [K, H, W] or None; maps: method -> [K, H, W].
        row_labels: one label per image (e.g. its class).
    """
    k = len(images)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(k, cols, figsize=(1.8 * cols, 1.8 * k), squeeze=False)
    for r in range(k):
        panels = [("image", None)] + list(maps.items())
        for c, (name, m) in enumerate(panels):
            ax = axes[r, c]
            if m is None:
                ax.imshow(images[r].transpose(1, 2, 0))
            else:
                a = np.abs(m[r].astype(float))
                ax.imshow(a / a.max() if a.max() > 0 else a, cmap="inferno", vmin=0, vmax=1)
            if masks is not None and masks[r].any():
                ax.contour(masks[r].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.suptitle(title + " (|map| / max per image; cyan: ground-truth region)", fontsize=9)
    save(fig, path)


def training_curves(history: pd.DataFrame, path: Path, *, title: str) -> None:
    """Training and validation loss and accuracy per epoch (phases of a joint model in sequence),
    and the maps' mass inside the masks when the history has it (joint models on masked data).

    Args:
        history: one row per epoch with train_/val_ loss and accuracy columns (``phase`` and
            ``train_mass``/``val_mass`` optional).
    """
    h = history.reset_index(drop=True).copy()
    h["step"] = range(1, len(h) + 1)
    panels = [([c for c in (f"train_{key}", f"val_{key}") if c in h], label)
              for key, label in (("loss", "loss"), ("acc", "accuracy"), ("mass", "map mass inside the mask"))]
    panels = [(cols, label) for cols, label in panels if cols and h[cols].notna().any().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (cols, label) in zip(axes[0], panels):
        for col in cols:
            ax.plot(h["step"], h[col], marker="o", ms=3, label=col.split("_")[0])
        ax.set(xlabel="epoch (all phases)" if "phase" in h else "epoch", ylabel=label)
        ax.grid(alpha=0.3)
        if "phase" in h:
            for start in h.index[h["phase"].diff().fillna(0) != 0]:
                ax.axvline(h.loc[start, "step"] - 0.5, color="gray", ls="--", lw=0.8)
        ax.legend()
    fig.suptitle(title + (": phases separated by dashed lines" if "phase" in h else ""))
    save(fig, path)
