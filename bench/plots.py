"""Plots (seaborn, PNG): one function per figure, each taking tidy data and an output path."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
    models = list(dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models):
        sns.lineplot(data=curves[curves["model"] == model], x="step", y="value", hue="method",
                     errorbar=("ci", 95), n_boot=200, seed=seed, ax=ax)
        ax.set(title=model, xlabel="perturbation step k", ylabel="f(x^(k))")
        ax.grid(alpha=0.3)
    fig.suptitle(title, y=1.04)
    save(fig, path)


def training_curves(history: pd.DataFrame, path: Path, *, title: str) -> None:
    """Training and validation loss and accuracy per epoch (phases of a joint model in sequence).

    Args:
        history: one row per epoch with train_/val_ loss and accuracy columns (``phase`` optional).
    """
    h = history.reset_index(drop=True).copy()
    h["step"] = range(1, len(h) + 1)
    loss_cols = [c for c in ("train_loss", "val_loss") if c in h]
    acc_cols = [c for c in ("train_acc", "val_acc") if c in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, cols, label in ((axes[0], loss_cols, "loss"), (axes[1], acc_cols, "accuracy")):
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
