"""Metrics that need the same engine curve share one engine call: the planner groups their
requests by curve key, the executor computes each once, and costs.csv shows the reuse."""

import json

import pandas as pd

from xaibench import config
from xaibench.run.plan import describe, plan
from xaibench.run.runner import run

CONFIG = """
[run]
seed = 0
device = "cpu"
batch_size = 4
bootstrap = 100

[dataset]
name = "synthetic"
image_size = 32
n_train = 8
n_val = 4
n_test = 8
radius = [3, 6]
n_shapes = [1, 3]

[models.resnet18]
arch = "resnet18"
epochs = 1
batch_size = 8

[methods.gradcam]

[metrics.aopc]
patch_size = 16
steps = 2
lerf = false

[metrics.aopc_same]
plugin = "aopc"
patch_size = 16
steps = 2
lerf = false

[metrics.aopc_lerf]
plugin = "aopc"
patch_size = 16
steps = 2

[metrics.deletion]
step = 256
"""


def test_equal_curve_requests_are_computed_once(tmp_path):
    path = tmp_path / "shared.toml"
    path.write_text(CONFIG)
    cfg = config.load(str(path), [f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    the_plan = plan(cfg)
    lines = describe(the_plan)
    assert "compute  score    resnet18/gradcam/aopc_same (curves shared with resnet18/gradcam/aopc)" in lines
    assert any(line.startswith("compute  score    resnet18/gradcam/aopc_lerf (curves shared with")
               for line in lines)
    assert "compute  score    resnet18/gradcam/deletion" in lines  # its own curve

    result = run(cfg, progress=False)
    costs = pd.read_csv(result.run_dir / "costs.csv").set_index(["stage", "metric"])["forwards_per_image"]
    assert costs["score", "aopc"] == 3  # the clean image and 2 steps
    assert costs["score", "aopc_same"] == 0  # the same curve: no forward pass at all
    assert costs["score", "aopc_lerf"] == 3  # only its LeRF curve; MoRF came from aopc
    assert costs["score", "deletion"] > 0
    board = pd.read_csv(result.run_dir / "leaderboard.csv").iloc[0]
    assert board["aopc_mean"] == board["aopc_same_mean"] == board["aopc_lerf_mean"]
    # computed alone, the metric that reused a curve gives the same numbers
    alone = tmp_path / "alone.toml"
    alone.write_text(CONFIG.split("[metrics.aopc]")[0] + "[metrics.aopc_lerf]\nplugin = \"aopc\"\n"
                     "patch_size = 16\nsteps = 2\n")
    single = run(config.load(str(alone), [f"run.out={json.dumps(str(tmp_path / 'out2'))}"]), progress=False)
    scores = pd.read_csv(result.run_dir / "scores.csv")
    single_scores = pd.read_csv(single.run_dir / "scores.csv")
    for column in ("aopc_lerf", "aopc_lerf_lerf", "aopc_lerf_gap"):
        a = scores[scores.metric == column]["value"].to_numpy()
        b = single_scores[single_scores.metric == column]["value"].to_numpy()
        assert len(a) == 8 and (a == b).all(), column
