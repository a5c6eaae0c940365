"""Training seeds as an axis of the run: ``[run] seeds`` checked before torch, one model cell per
seed (adding a seed reuses the others), the hierarchical bootstrap, merged one-seed runs equal to
the multi-seed run, resume after kill -9, and the xML paper's claim read off the scores."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xaibench import config
from xaibench.cli import main
from xaibench.config import ConfigError
from xaibench.leaderboard import statistics
from xaibench.leaderboard.jointclaim import ClaimSetup, claim_tables
from xaibench.leaderboard.merge import merge_runs
from xaibench.run.plan import plan

CONFIG = """
[run]
seed = 0
device = "cpu"
batch_size = 4
bootstrap = 100
threads = 1

[dataset]
name = "synthetic"
image_size = 32
n_train = 16
n_val = 4
n_test = 8
radius = [3, 6]
n_shapes = [1, 3]

[models.resnet18]
arch = "resnet18"
epochs = 1
batch_size = 8

[methods.gradcam]

[methods.saliency]

[methods.random]

[metrics.relevance_mass]

[metrics.pompom]
"""
TABLES = ("leaderboard.csv", "scores.csv", "models.csv")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "seeds.toml"
    path.write_text(CONFIG)
    return path


def load(cfg: Path, *overrides: str) -> config.Config:
    return config.load(str(cfg), list(overrides))


# -- the config and the plan ------------------------------------------------------------------------


@pytest.mark.parametrize("value,match", [
    ("[]", r"\[run\] seeds: must list at least one seed, got \[\]"),
    ("[0, -1]", r"\[run\] seeds: must be integers >= 0"),
    ("[1, 1]", r"\[run\] seeds: must be distinct, got \[1, 1\]"),
    ("[0.5]", r"\[run\] seeds: expected a list of int"),
])
def test_bad_seeds_are_one_line_config_errors(cfg, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        load(cfg, f"run.seeds={value}")
    assert "\n" not in str(err.value)


def test_bad_seeds_on_the_command_line_fail_before_torch_is_loaded(cfg):
    code = textwrap.dedent(f"""
        import sys
        from xaibench.cli import main
        rc = main(["run", {str(cfg)!r}, "--seeds", "0,x", "--dry-run"])
        print(rc, "torch._C" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert proc.stderr.startswith("xaibench: error: --seeds 0,x: [run] seeds: expected a list of int")


def test_one_seed_keeps_the_run_id_the_cell_names_and_keys(cfg, tmp_path):
    out = f"run.out={json.dumps(str(tmp_path))}"
    default, spelled = plan(load(cfg, out)), plan(load(cfg, out, "run.seeds=[0]"))
    assert default.run_id == spelled.run_id
    assert [(c.name, c.key, c.path) for c in default.cells] == \
        [(c.name, c.key, c.path) for c in spelled.cells]
    assert "seeds" not in default.config.resolved()["run"]
    assert not any("@" in c.name for c in default.cells)


def test_every_trained_model_gets_a_cell_per_seed_and_adding_a_seed_reuses_the_others(cfg, tmp_path):
    out = f"run.out={json.dumps(str(tmp_path))}"
    one, three = plan(load(cfg, out)), plan(load(cfg, out, "run.seeds=[0, 1, 2]"))
    assert [c.name for c in three.of_kind("model")] == ["resnet18@0", "resnet18@1", "resnet18@2"]
    assert {c.seed for c in three.of_kind("score")} == {0, 1, 2}
    assert all(c.record["seed"] == c.seed for c in three.cells if c.kind in ("model", "explain"))
    # seed 0's cells are the one-seed run's cells: same keys, same files
    seed0 = {c.name.replace("@0", ""): (c.key, c.path) for c in three.cells if c.seed == 0}
    assert seed0 == {c.name: (c.key, c.path) for c in one.cells}
    assert len({c.key for c in three.of_kind("model")}) == 3
    assert len(three.cells) == 1 + 3 * (len(one.cells) - 1)


# -- the hierarchical bootstrap ---------------------------------------------------------------------


def test_one_seed_is_the_plain_bootstrap_exactly():
    v = np.random.default_rng(1).normal(size=40)
    v[3] = np.nan
    assert statistics.hierarchical_ci([v], n_boot=500, seed=7) == \
        statistics.bootstrap_ci(v[np.isfinite(v)], n_boot=500, seed=7)
    scores = pd.DataFrame({"model": "m", "method": np.repeat(["a", "b"], 40), "metric": "x",
                           "higher_is_better": True, "index": np.tile(np.arange(40), 2),
                           "value": np.concatenate([v, v + 0.3])})
    models = pd.DataFrame({"model": ["m"], "accuracy": [1.0]})
    plain = statistics.summarise(scores, models, dataset="d", n_boot=200, seed=0)
    seeded = statistics.summarise(scores.assign(seed=5), models.assign(seed=5), dataset="d", n_boot=200,
                                  seed=0)
    pd.testing.assert_frame_equal(plain, seeded, check_exact=True)


def test_a_seed_effect_much_larger_than_the_image_noise_widens_the_interval_to_the_seeds_spread():
    rng = np.random.default_rng(0)
    seeds = [level + 0.01 * rng.normal(size=50) for level in (0.0, 1.0, 2.0)]
    lo, hi = statistics.hierarchical_ci(seeds, n_boot=2000, seed=0)
    plo, phi = statistics.bootstrap_ci(np.concatenate(seeds), n_boot=2000, seed=0)
    assert phi - plo < 0.4  # images alone: the pooled bootstrap sees a tight mean near 1
    # three seeds drawn with replacement: the mean of 0, 1 and 2 moves by thirds
    assert lo <= 1 / 3 + 0.02 and hi >= 5 / 3 - 0.02
    assert statistics.seed_spread(seeds) == pytest.approx(1.0, abs=0.01)


def test_without_a_seed_effect_the_interval_is_the_image_bootstraps():
    rng = np.random.default_rng(3)
    values = rng.normal(size=600)
    seeds = np.split(values, 3)
    lo, hi = statistics.hierarchical_ci(seeds, n_boot=4000, seed=0)
    plo, phi = statistics.bootstrap_ci(values, n_boot=4000, seed=0)
    assert hi - lo == pytest.approx(phi - plo, rel=0.25)
    assert (lo + hi) / 2 == pytest.approx((plo + phi) / 2, abs=0.02)


# -- runs: merged one-seed runs, resume -------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(cfg, tmp_path_factory) -> dict[str, Path]:
    """One three-seed run and the one-seed runs of seeds 0, 1 and 2 (sharing its cache):
    ``--seeds`` value -> run folder."""
    out = tmp_path_factory.mktemp("runs")
    folders = {}
    for seeds in ("0,1,2", "0", "1", "2"):
        assert main(["run", str(cfg), "--out", str(out), "--no-progress", "--seeds", seeds]) == 0
        folders[seeds] = plan(load(cfg, f"run.out={json.dumps(str(out))}", f"run.seeds=[{seeds}]")).run_dir
    return folders


def test_a_loaded_model_is_evaluated_once_beside_the_trained_ones(cfg, runs, tmp_path):
    (ckpt, *_) = sorted((runs["0"].parent / "cache" / "models").glob("resnet18-*.pt"))
    loaded = tmp_path / "loaded.toml"
    loaded.write_text(cfg.read_text() + f"\n[models.loaded]\narch = 'resnet18'\ncheckpoint = '{ckpt}'\n")
    the_plan = plan(load(loaded, f"run.out={json.dumps(str(tmp_path))}", "run.seeds=[3, 4]"))
    assert [(c.name, c.seed) for c in the_plan.of_kind("model")] == [
        ("resnet18@3", 3), ("resnet18@4", 4), ("loaded", 0)]
    assert {c.seed for c in the_plan.cells if c.model == "loaded"} == {0}


def test_a_three_seed_run_writes_seed_columns_and_pools_the_seeds(runs):
    folder = runs["0,1,2"]
    scores, board = pd.read_csv(folder / "scores.csv"), pd.read_csv(folder / "leaderboard.csv")
    assert list(scores.columns[:3]) == ["dataset", "model", "seed"] and set(scores["seed"]) == {0, 1, 2}
    assert set(pd.read_csv(folder / "models.csv")["seed"]) == {0, 1, 2}
    assert (board["n"] == 3 * 8).all() and (board["seeds"] == 3).all()
    row = board[board["method"] == "saliency"].iloc[0]
    part = scores[(scores["method"] == "saliency") & (scores["metric"] == "relevance_mass")]
    assert row["relevance_mass_mean"] == pytest.approx(part["value"].mean(), rel=1e-5)
    per_seed = part.groupby("seed")["value"].mean()
    assert row["relevance_mass_seed_std"] == pytest.approx(per_seed.std(ddof=1), rel=1e-5)
    report = (folder / "report.md").read_text()
    assert "hierarchical bootstrap" in report and "relevance_mass: spread across seeds" in report
    one = pd.read_csv(runs["0"] / "scores.csv")
    assert "seed" not in one.columns  # a one-seed run writes today's tables


def test_merging_the_one_seed_runs_gives_the_three_seed_runs_table(runs, tmp_path):
    from xaibench.io import write_csv
    from xaibench.report.render import RunFolder

    three = pd.read_csv(runs["0,1,2"] / "leaderboard.csv")
    folders = [RunFolder(runs[s]) for s in ("2", "0", "1")]  # any order: the units go by seed
    names = [str(f.path) for f in folders]
    merged = merge_runs({n: f.board for n, f in zip(names, folders)},
                        {n: f.scores for n, f in zip(names, folders)},
                        seeds={n: f.seeds[0] for n, f in zip(names, folders)}, n_boot=folders[0].bootstrap,
                        seed=folders[0].seed)
    write_csv(tmp_path / "merged.csv", merged)  # as `xaibench leaderboard` writes it
    merged = pd.read_csv(tmp_path / "merged.csv")
    assert set(merged["runs"]) == {3}
    key = ["model", "method"]
    a, b = three.set_index(key).sort_index(), merged.set_index(key).sort_index()
    for m in ("relevance_mass", "pompom"):
        for column in (f"{m}_n", f"{m}_rank", f"{m}_rank_worst", f"{m}_beats_controls"):
            pd.testing.assert_series_equal(a[column], b[column], check_exact=True, check_dtype=False)
        # the merge reads scores.csv (6 significant digits), the run its full-precision scores
        for column in (f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"):
            pd.testing.assert_series_equal(a[column], b[column], rtol=1e-5, atol=1e-9)
        pd.testing.assert_series_equal(a[f"{m}_seed_std"], b[f"{m}_std"], rtol=1e-5, atol=1e-9,
                                       check_names=False)
    pd.testing.assert_series_equal(a["mean_rank"], b["mean_rank"], check_exact=True)
    pd.testing.assert_series_equal(a["family_rank"], b["family_rank"], check_exact=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_multi_seed_run_killed_mid_way_resumes_to_the_same_files(cfg, runs, tmp_path):
    command = [sys.executable, "-m", "xaibench", "run", str(cfg), "--out", str(tmp_path), "--no-progress",
               "--seeds", "0,1,2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    models = tmp_path / "synthetic" / "cache" / "models"
    wait_for(lambda: len([p for p in models.glob("resnet18-*.pt") if not p.name.startswith(".")]) >= 2, proc)
    proc.send_signal(signal.SIGKILL)  # seed 0 finished, seed 1 trained, seed 2 not started
    proc.wait()
    assert not list((tmp_path / "synthetic").glob("seeds-*/leaderboard.csv"))
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    folder = next((tmp_path / "synthetic").glob("seeds-*"))
    cells = {c["name"]: c for c in json.loads((folder / "manifest.json").read_text())["cells"]}
    assert cells["resnet18@0"]["computed"] is False and cells["resnet18@2"]["computed"] is True
    reference = runs["0,1,2"]
    for name in TABLES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


# -- the joint claim --------------------------------------------------------------------------------


def claim_scores(pompom: dict[tuple[int, str, str], float]) -> pd.DataFrame:
    """Per-image scores (4 images) of POMPOM on positives and the relevance mass, per seed."""
    rows = []
    for (seed, model, method), value in pompom.items():
        for i in range(4):
            rows.append({"model": model, "seed": seed, "method": method, "metric": "pompom_pos",
                         "index": i, "value": value + 0.01 * i})
            rows.append({"model": model, "seed": seed, "method": method, "metric": "relevance_mass",
                         "index": i, "value": 1 - value})
    return pd.DataFrame(rows)


SETUP = ClaimSetup({"hybrid": "joint_hybrid", "unsupervised": "joint_unsup"}, ["joint"], ["gradcam"],
                   {"pompom_positives": "pompom_pos", "mass": "relevance_mass"})


def test_the_papers_ordering_is_checked_per_seed_and_overall():
    values = {}
    for seed, (hybrid, unsup) in {0: (0.1, 0.2), 1: (0.3, 0.2), 2: (0.1, 0.15)}.items():
        values.update({(seed, "joint_hybrid", "joint"): hybrid, (seed, "joint_unsup", "joint"): unsup,
                       (seed, "resnet18", "gradcam"): 0.25, (seed, "joint_hybrid", "gradcam"): 0.4,
                       (seed, "resnet18", "random"): 0.0})  # a control is no post-hoc method
    claim, order = claim_tables(claim_scores(values), SETUP, seed=0)
    assert list(order["seed"]) == [0, 1, 2, "all"]
    assert list(order["ordering_holds"]) == [True, False, True, True]
    overall = order.iloc[-1]
    assert overall["hybrid"] == pytest.approx(np.mean([0.1, 0.3, 0.1]) + 0.015)
    assert overall["best_post_hoc_method"] == "gradcam on resnet18"
    assert "random" not in set(claim["method"])
    assert set(claim["map"]) == {"joint", "post-hoc"}
    assert claim[(claim["seed"] == "all") & (claim["model"] == "joint_unsup")]["mass"].iloc[0] == \
        pytest.approx(1 - np.mean([0.2, 0.2, 0.15]))
    assert overall["verdict"].startswith("Over every seed's test images, the paper's ordering "
                                         "(joint_hybrid's map < joint_unsup's map < every post-hoc method")
    assert " holds: 0.182 < 0.198 < 0.265 (best post-hoc method: gradcam on resnet18)" in overall["verdict"]
    assert overall["verdict"].endswith("Seed by seed it holds on 2 of 3 (seed 0, 2).")


def test_the_verdict_names_each_part_that_fails():
    values = {(0, "joint_hybrid", "joint"): 0.3, (0, "joint_unsup", "joint"): 0.2,
              (0, "resnet18", "gradcam"): 0.25}
    _, order = claim_tables(claim_scores(values).drop(columns="seed"), SETUP, seed=4)
    assert list(order["seed"]) == [4]
    verdict = order["verdict"].iloc[0]
    assert verdict.startswith("On the test images, the paper's ordering")
    assert "does not hold: joint_hybrid's map (0.315) is not below joint_unsup's (0.215); joint_hybrid's " \
           "map (0.315) is not below the best post-hoc method (gradcam on resnet18, 0.265)." in verdict
    missing = ClaimSetup({"hybrid": "joint_hybrid"}, ["joint"], ["gradcam"],
                         {"pompom_positives": "pompom_pos"})
    _, order = claim_tables(claim_scores(values).drop(columns="seed"), missing, seed=0)
    assert "no joint model trained with the unsupervised loss" in order["verdict"].iloc[0]
