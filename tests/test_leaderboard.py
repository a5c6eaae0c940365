"""Leaderboard columns and directions of every built-in metric, from real metric outputs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from xaibench.config import ConfigError, parse
from xaibench.leaderboard.statistics import summarise
from xaibench.leaderboard.tables import score_frames
from xaibench.params import build
from xaibench.plugins import Dataset
from xaibench.registry import DATASETS, METRICS

from .conftest import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

# column -> direction, for one instance of every built-in metric under its own name
EXPECTED = {
    "aopc": "higher", "aopc_lerf": "lower", "aopc_gap": "higher",
    "deletion": "lower", "insertion": "higher",
    "pompom": "lower", "pompom_scaled_by_abs_max": "none",
    "pointing_game": "higher", "relevance_mass": "higher", "relevance_rank": "higher",
    "sparseness": "higher", "road": "lower", "road_lerf": "higher", "road_gap": "higher",
    "mprt": "lower", "mprt_ssim": "none",
}
SETTINGS = {"aopc": {"patch_size": 8, "steps": 4}, "deletion": {"step": 128}, "insertion": {"step": 128},
            "road": {"percentages": [0.3, 0.6]}, "mprt": {"stages": 2}}


class FixedMap:
    """A stand-in method that returns given maps whatever the model."""

    def __init__(self, maps):
        self.maps = maps

    def attribute(self, model, images, targets):
        return self.maps


def test_every_metric_column_has_its_direction():
    gen = torch.Generator().manual_seed(0)
    model = tiny_net()
    x = torch.rand(6, 3, 32, 32, generator=gen)
    y = torch.randint(0, 2, (6,), generator=gen)
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    masks[:4, 8:20, 4:16] = True  # two images without an object
    maps = {"good": torch.where(masks, 1.0, 0.01) + 0.001 * torch.rand(6, 32, 32, generator=gen),
            "noise": torch.rand(6, 32, 32, generator=gen)}
    rows = []
    for name in EXPECTED:
        if name not in METRICS.names():
            continue
        metric = build(METRICS.get(name), SETTINGS.get(name, {}))
        for method, a in maps.items():
            # mprt recomputes maps: a map that ignores the model stands in for each method here
            extra = {"method": FixedMap(a)} if metric.needs_method else {}
            out = metric.evaluate(model, x, y, a, masks, **extra)
            rows += score_frames("tiny", method, name, name, metric, out.scores)
    models = pd.DataFrame({"model": ["tiny"], "accuracy": [1.0]})
    board = summarise(pd.concat(rows, ignore_index=True), models, dataset="d", n_boot=100, seed=0)
    for column, direction in EXPECTED.items():
        assert (board[f"{column}_direction"] == direction).all(), column
        assert board[f"{column}_mean"].notna().all()
        ranks, worst = board[f"{column}_rank"], board[f"{column}_rank_worst"]
        assert ranks.isna().all() if direction == "none" else set(ranks) <= {1.0, 2.0}
        assert worst.isna().all() if direction == "none" else set(worst) <= {1.0, 2.0}
    good = board.set_index("method").loc["good"]
    assert good["pointing_game_n"] == 4 and good["relevance_rank_n"] == 4  # empty masks left out
    assert good["pompom_n"] == 6  # an empty mask is all background
    assert good["relevance_mass_rank"] == 1 and good["pompom_rank"] == 1
    ranked = [c for c in EXPECTED if EXPECTED[c] != "none"]
    # ties share a rank range; the mean rank averages the midpoints of the ranges
    assert good["mean_rank"] == pytest.approx(np.mean([(good[f"{c}_rank"] + good[f"{c}_rank_worst"]) / 2
                                                       for c in ranked]))


def test_informational_column_stays_out_of_the_mean_rank():
    # eight images: a beats b on every one (one image could not separate them: both "#1-2")
    frame = pd.DataFrame({
        "model": "m", "method": np.repeat(["a", "a", "b", "b"], 8),
        "metric": np.repeat(["x", "x_info", "x", "x_info"], 8),
        "higher_is_better": np.repeat([True, None, True, None], 8), "index": np.tile(np.arange(8), 4),
        "value": np.repeat([1.0, 5.0, 0.0, 1.0], 8) + np.tile(np.arange(8) / 10, 4)})
    board = summarise(frame, pd.DataFrame({"model": ["m"], "accuracy": [1.0]}), dataset="d", n_boot=100,
                      seed=0).set_index("method")
    assert board.loc["a", "x_info_direction"] == "none" and np.isnan(board.loc["a", "x_info_rank"])
    assert board.loc["a", "mean_rank"] == 1 and board.loc["b", "mean_rank"] == 2


def test_quick_run_writes_every_metric_column(tmp_path):
    sets = ["metrics.aopc.steps=2", "run.bootstrap=100", "metrics.deletion={step=128}",
            "metrics.insertion={step=128, substrate='blur', blur_kernel=5, blur_sigma=2.0}",
            "metrics.pompom={}", "metrics.pointing_game={}", "metrics.relevance_mass={}",
            "metrics.relevance_rank={}", "metrics.sparseness={}", "metrics.road={percentages=[0.3, 0.6]}",
            "metrics.mprt={stages=2}"]
    args = ["run", "quick", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run([sys.executable, "-m", "xaibench.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "synthetic").glob("quick-*")
    board = pd.read_csv(run_dir / "leaderboard.csv")
    for column, direction in EXPECTED.items():
        assert board[f"{column}_direction"].iloc[0] == direction, column
    curves = pd.read_csv(run_dir / "curves.csv")
    assert set(curves["curve"]) == {"aopc_morf", "aopc_lerf", "deletion_curve", "insertion_curve",
                                    "road_morf", "road_lerf", "mprt_spearman", "mprt_ssim"}
    assert curves.groupby("curve")["step"].max().to_dict() == {
        "aopc_morf": 2, "aopc_lerf": 2, "deletion_curve": 8, "insertion_curve": 8, "road_morf": 2,
        "road_lerf": 2, "mprt_spearman": 2, "mprt_ssim": 2}
    for curve in ("aopc_morf", "aopc_lerf", "deletion_curve", "insertion_curve", "road_morf", "road_lerf",
                  "mprt_spearman"):
        assert (run_dir / "plots" / f"{curve}.png").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["metrics"]["insertion"]["blur_kernel"] == 5


@DATASETS.register("nomask_metrics_fixture")
class NoMasks(Dataset):
    """A dataset without masks (test fixture)."""

    def __init__(self, *, image_size: int = 32) -> None:
        self.size = image_size

    @property
    def has_masks(self):
        return False

    @property
    def image_size(self):
        return (self.size, self.size)


@pytest.mark.parametrize("name", METRICS.names())
def test_metrics_that_need_masks_fail_at_config_time_without_them(name):
    raw = {"dataset": {"name": "nomask_metrics_fixture"}, "models": {"r": {"arch": "resnet18"}},
           "methods": {"gradcam": {}}, "metrics": {name: SETTINGS.get(name, {})}}
    if METRICS.get(name).requires_masks:
        with pytest.raises(ConfigError, match=rf"\[metrics.{name}\] needs ground-truth masks, but dataset "
                                              r"'nomask_metrics_fixture' has none"):
            parse(raw, name="t", source="t.toml")
    else:
        parse(raw, name="t", source="t.toml")


def test_aopc_after_l_steps_by_hand():
    from xaibench.report.plots import aopc_by_steps

    curves = pd.DataFrame({"model": "m", "method": "a", "index": 0, "step": [2, 0, 1],
                           "value": [0.0, 1.0, 0.5]})  # f = 1, 0.5, 0 (rows out of order)
    got = aopc_by_steps(curves).sort_values("L")["value"].tolist()
    assert got == pytest.approx([0.0, 0.5 / 2, 1.5 / 3])  # 1/(L+1) sum_k f0 - fk


def test_metric_agreement_is_kendall_tau_with_directions():
    from xaibench.leaderboard.agreement import agreement

    # four methods: the fewest the agreement uses (tau from 3 can only be +-1/3 or +-1)
    board = pd.DataFrame({"dataset": "d", "model": "m", "method": ["a", "b", "c", "d"],
                          "x_mean": [4.0, 3.0, 2.0, 1.0], "x_direction": "higher",
                          "y_mean": [1.0, 2.0, 3.0, 4.0], "y_direction": "lower",   # same order as x
                          "z_mean": [1.0, 2.0, 3.0, 4.0], "z_direction": "higher",  # reversed
                          "w_mean": [1.0, 2.0, 3.0, 4.0], "w_direction": "none"})   # not ranked
    tau = agreement(board)
    assert list(tau.columns) == ["x", "y", "z"]
    assert tau.loc["x", "y"] == pytest.approx(1.0) and tau.loc["x", "z"] == pytest.approx(-1.0)
    assert tau.loc["y", "z"] == pytest.approx(-1.0)
