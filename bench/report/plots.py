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


CONTROL_DASHES = ("--", (0, (5, 2, 1, 2)), ":", (0, (8, 3)))


def line_styles(methods: typing.Iterable[str], controls: typing.Iterable[str]) -> dict[str, dict]:
    """Matplotlib line keywords per method: a colour each for real methods, and grey dashed lines
    (a different grey and dash each) for the controls, which ignore the model."""
    methods, controls = sorted(set(methods)), set(controls)
    real = [m for m in methods if m not in controls]
    colours = dict(zip(real, sns.color_palette("tab10" if len(real) <= 10 else "husl", len(real))))
    styles = {m: {"color": colours[m], "linestyle": "-", "linewidth": 1.6} for m in real}
    ctrl = [m for m in methods if m in controls]
    for i, m in enumerate(ctrl):
        styles[m] = {"color": str(0.25 + 0.45 * i / max(1, len(ctrl) - 1)),
                     "linestyle": CONTROL_DASHES[i % len(CONTROL_DASHES)], "linewidth": 1.3}
    return styles


def mean_curves(summary: pd.DataFrame, path: Path, *, title: str,
                controls: typing.Iterable[str] = ()) -> None:
    """Mean perturbation curve per method with its 95% bootstrap band, one panel per model;
    controls grey and dashed.

    Args:
        summary: columns model, method, step, mean, ci_low, ci_high
            (:func:`xaibench.leaderboard.statistics.curve_summary`).
    """
    lines_per_model(summary, "step", path, title=title, controls=controls,
                    xlabel="perturbation step k", ylabel="f(x^(k))")


def lines_per_model(summary: pd.DataFrame, x: str, path: Path, *, title: str,
                    controls: typing.Iterable[str], xlabel: str, ylabel: str) -> None:
    """One line per method (the mean) with its band (ci_low to ci_high), one panel per model; the
    intervals are given, not recomputed here."""
    models = list(dict.fromkeys(summary["model"]))
    styles = line_styles(summary["method"], controls)
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models):
        part = summary[summary["model"] == model]
        for method, style in styles.items():
            g = part[part["method"] == method].sort_values(x)
            if len(g):
                ax.plot(g[x], g["mean"], label=method, **style)
                ax.fill_between(g[x], g["ci_low"], g["ci_high"], color=style["color"], alpha=0.15,
                                linewidth=0)
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
        curves: long MoRF curves with columns model, method, index, step, value (and seed, with
            several training seeds).
    Returns:
        long format with columns model, method, index, L, value (the AOPC over the first L
        steps), and seed when ``curves`` has it.
    """
    seeded = ["seed"] if "seed" in curves.columns else []
    c = curves.sort_values(["model", *seeded, "method", "index", "step"])
    keys = [c[k] for k in ("model", *seeded, "method", "index")]
    drop = c.groupby(keys, sort=False)["value"].transform("first") - c["value"]
    aopc = drop.groupby(keys, sort=False).cumsum() / (c["step"] + 1)
    return pd.DataFrame({"model": c["model"], **{k: c[k] for k in seeded}, "method": c["method"],
                         "index": c["index"], "L": c["step"], "value": aopc})


def aopc_vs_steps(summary: pd.DataFrame, path: Path, *, title: str,
                  controls: typing.Iterable[str] = ()) -> None:
    """AOPC as a function of the number of perturbation steps L, per method with its 95% band,
    one panel per model.

    Args:
        summary: columns model, method, L, mean, ci_low, ci_high (the per-image AOPC of
            :func:`aopc_by_steps` through :func:`xaibench.leaderboard.statistics.curve_summary`).
    """
    lines_per_model(summary, "L", path, title=title, controls=controls, xlabel="steps L",
                    ylabel="AOPC after L steps")


def aopc_grid(grid: pd.DataFrame, path: Path, *, title: str, controls: typing.Iterable[str] = ()) -> None:
    """The xML paper's figure: mean AOPC over patch sizes, one panel per (model, substrate);
    controls grey and dashed.

    Args:
        grid: columns model, method, substrate, patch_size, value (the mean AOPC over images).
    """
    models = list(dict.fromkeys(grid["model"]))
    substrates = list(dict.fromkeys(grid["substrate"]))
    styles = line_styles(grid["method"], controls)
    sizes = sorted(grid["patch_size"].unique())
    fig, axes = plt.subplots(len(models), len(substrates), squeeze=False, sharey=True,
                             figsize=(3.2 * len(substrates), 2.8 * len(models)))
    for row, model in zip(axes, models):
        for ax, substrate in zip(row, substrates):
            part = grid[(grid["model"] == model) & (grid["substrate"] == substrate)]
            for method, style in styles.items():
                g = part[part["method"] == method].sort_values("patch_size")
                if len(g):
                    ax.plot(g["patch_size"], g["value"], marker="o", ms=4, label=method, **style)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, labels=[str(p) for p in sizes])
            ax.set(title=f"{model}, {substrate}", xlabel="patch size (px)", ylabel="AOPC")
            ax.grid(alpha=0.3)
    legend_outside(fig, axes.ravel())
    fig.suptitle(title, y=1.02)
    save(fig, path)


def metric_bars(summary: pd.DataFrame, path: Path, *, title: str, ylabel: str,
                points: pd.DataFrame | None = None) -> None:
    """Mean score per method with its 95% interval as given (the leaderboard's own), one colour
    per model (e.g. POMPOM), and with several training seeds each seed's mean as a dot on its bar.

    Args:
        summary: columns model, method, mean, ci_low, ci_high (one row per model and method).
        points: columns model, method, value: the per-seed means (None: no dots).
    """
    methods = list(dict.fromkeys(summary["method"]))
    models = list(dict.fromkeys(summary["model"]))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(methods) + 2), 3.6))
    for i, (model, colour) in enumerate(zip(models, sns.color_palette("tab10", len(models)))):
        part = summary[summary["model"] == model].set_index("method").reindex(methods)
        x = np.arange(len(methods)) - 0.4 + width * (i + 0.5)
        err = np.vstack([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]])
        ax.bar(x, part["mean"], width, yerr=np.nan_to_num(err), color=colour, label=model,
               error_kw={"elinewidth": 1, "capsize": 2})
        if points is not None:
            dots = points[points["model"] == model]
            at = dict(zip(methods, x))
            ax.scatter([at[m] for m in dots["method"]], dots["value"], s=10, color="black", zorder=3,
                       label="per seed" if i == 0 else None)
    ax.set_xticks(np.arange(len(methods)), labels=methods, rotation=30, ha="right")
    ax.set(xlabel="", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    legend_outside(fig, [ax])
    save(fig, path)


def agreement_heatmap(matrix: pd.DataFrame, path: Path, *, title: str,
                      methods: pd.DataFrame | None = None) -> None:
    """Kendall tau between the method rankings of each pair of metrics (1 = same order), each
    cell with the number of methods it compares (``methods``: same shape, text)."""
    size = 1.0 + 0.9 * len(matrix)
    notes = [[("" if pd.isna(t) else f"{t:.2f}") + (f"\nn={n}" if methods is not None and n else "")
              for t, n in zip(row, methods.loc[a] if methods is not None else [""] * len(row))]
             for a, row in matrix.iterrows()]
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(matrix, vmin=-1, vmax=1, center=0, cmap="vlag", annot=np.array(notes, dtype=object),
                fmt="", square=True, cbar_kws={"label": "Kendall tau"}, ax=ax,
                annot_kws={"fontsize": 8})
    ax.set(title=title + ("\n(n: methods compared per model)" if methods is not None else ""))
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
    """Test images (with the ground-truth region outlined) and one column per method, with a
    colour bar for the maps.

    Args:
        images: uint8 [K, 3, H, W]; masks: bool [K, H, W] or None; maps: method -> [K, H, W].
        row_labels: one label per image (e.g. its true and predicted class).
    """
    k = len(images)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(k, cols, figsize=(1.8 * cols + 0.8, 1.8 * k), squeeze=False)
    panels = [("image", None)] + list(maps.items())
    for r in range(k):
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
                ax.set_ylabel(row_labels[r], fontsize=7)
    if maps:
        mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), cmap="inferno")
        top, bottom = axes[0, -1].get_position(), axes[-1, -1].get_position()
        cax = fig.add_axes((top.x1 + 0.01, bottom.y0, 0.012, top.y1 - bottom.y0))
        fig.colorbar(mappable, cax=cax, label="|map| / max over the image")
    fig.suptitle(title + (" (cyan: ground-truth region)" if masks is not None else ""), fontsize=9)
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


TRADEOFF_COLUMNS = ["method", "point", "activation", "reidentification"]


def tradeoff(table: pd.DataFrame, path: Path | str, *, title: str = "") -> pd.DataFrame:
    """Draw the activation / re-identification trade-off (one line per method: re-identification
    against activation; :mod:`xaibench.run.replay`) as a PNG at ``path``; returns the table as
    plotted."""
    missing = [c for c in TRADEOFF_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"the trade-off table lacks column(s) {', '.join(missing)}")
    data = table[TRADEOFF_COLUMNS].reset_index(drop=True)
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
