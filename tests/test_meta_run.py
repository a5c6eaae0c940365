"""The meta-evaluation in a run: [meta] checked like every other section, its cells keyed and
cached (a second run reuses them), meta.csv and rank_stability.csv in the run folder."""

import copy

import numpy as np
import pandas as pd
import pytest

from xaibench.config import parse
from xaibench.errors import ConfigError

RAW = {"run": {"device": "cpu", "batch_size": 8, "bootstrap": 100, "seed": 0, "threads": 1},
       "dataset": {"name": "synthetic", "variant": "colour", "image_size": 16, "n_train": 16,
                   "n_val": 8, "n_test": 12, "radius": [2, 4], "n_shapes": [1, 2]},
       "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
       "methods": {"saliency": {}, "random": {}, "sobel": {}},
       "metrics": {"aopc": {"patch_size": 8, "steps": 2}, "deletion": {"step": 64}},
       "meta": {"perturbations": 2, "images": 10, "model_adversary": 0.5,
                "sweep": {"aopc": {"substrate": ["black", "blur"], "lerf": [True, False]}}}}


def raw(out, **meta):
    r = copy.deepcopy(RAW)
    r["run"]["out"] = str(out)
    r["meta"].update(meta)
    return r


@pytest.mark.parametrize("change, message", [
    ({"perturbations": 0}, "[meta] perturbations: must be >= 1"),
    ({"input_adversary": -1.0}, "[meta] input_adversary: must be > 0"),
    ({"metrics": ["nope"]}, "[meta] metrics: nope not among the run's metrics"),
    ({"colour": 1}, "[meta] colour: unknown key"),
    ({"sweep": {"aopc": {"substrate": ["purple"]}}}, "[meta.sweep.aopc] substrate"),
    ({"sweep": {"aopc": {"patch_size": 4}}}, "[meta.sweep.aopc] patch_size: must be a non-empty list"),
    ({"sweep": {"pompom": {"x": [1]}}}, "[meta.sweep.pompom]: not a metric of this run"),
    ({"sweep": {"aopc": {"patch_size": [8, 32]}}}, "[meta.sweep.aopc] patch_size: 32 is larger than"),
])
def test_meta_settings_are_checked_with_one_line_errors(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        parse(raw(tmp_path, **change), name="meta", source="test.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_no_meta_section_leaves_the_run_id_as_it_was(tmp_path):
    from xaibench.run.plan import plan

    plain = copy.deepcopy(raw(tmp_path))
    del plain["meta"]
    the_plan = plan(parse(plain, name="m", source="t"))
    assert not the_plan.of_kind("meta") and "meta" not in the_plan.config.resolved()


def test_a_run_with_meta_writes_meta_csv_and_reuses_its_cells(tmp_path):
    from xaibench.run.plan import plan
    from xaibench.run.runner import run

    config = parse(raw(tmp_path), name="meta", source="test.toml")
    cells = plan(config).of_kind("meta")
    # 2 metrics x 4 tests x 1 iteration, and the aopc sweep's 4 settings
    assert len(cells) == 2 * 4 + 4 and len({c.key for c in cells}) == len(cells)
    first = run(config, progress=False)
    meta = pd.read_csv(first.run_dir / "meta.csv")
    assert list(meta["metric"]) == ["aopc", "deletion"]
    for col in ("mc", "iac_nr", "iac_ar", "iec_nr", "iec_ar", "alpha", "inter_method_rho",
                "internal_consistency"):
        assert col in meta
    parts = meta[["iac_nr", "iec_nr", "alpha"]].to_numpy()
    assert np.isfinite(parts).all() and (parts[:, :2] >= 0).all() and (parts[:, :2] <= 1).all()
    # MC needs all four parts: NaN when no prediction flipped under the adversary tests
    assert (meta["mc"].between(0, 1) | (meta["mc"].isna() & meta["iac_ar"].isna())).all()
    assert np.isfinite(meta.set_index("metric").loc["aopc", "stability"])
    ranks = pd.read_csv(first.run_dir / "rank_stability.csv")
    shares = ranks.groupby("method")["share"].sum()
    assert set(shares.index) == {"saliency", "random", "sobel"} and np.allclose(shares, 1.0)
    assert all(first.cells[c.name]["computed"] for c in cells)
    # only the images a test keeps are scored: the others are NaN, the kept ones finite
    from xaibench.io import load_checked
    from xaibench.meta.consistency import kept

    for c in (c for c in cells if c.parts[2] != "sweep"):
        held = load_checked(c.path)
        keep = kept(held["base"].numpy(), held["predictions"].numpy(), c.parts[2])  # [K, N]
        scored = np.isfinite(held["scores"].numpy())  # [K, M, N]
        assert (scored == keep[:, None, :]).all(), c.name
    from xaibench.leaderboard.trusted import concerns
    from xaibench.report.render import render

    report = render(first.run_dir).read_text()
    section = report.split("## Which metrics to trust on this run")[1]
    assert "| verdict |" in section and "| resnet18 | aopc |" in section
    # the leaderboard carries each meta-evaluated metric's verdict and the ranks from the passing ones
    board = pd.read_csv(first.run_dir / "leaderboard.csv")
    verdicts = meta.set_index("metric").apply(lambda r: not concerns(r), axis=1)
    for metric in ("aopc", "deletion"):
        assert board[f"{metric}_trusted"].tolist() == [verdicts[metric]] * len(board)
        header = report.split("## Which metrics")[0].split("\n| model | method |")[1].splitlines()[0]
        assert (f"{metric} ↑ (fails meta)" in header or f"{metric} ↓ (fails meta)" in header) == (
            not verdicts[metric])
    assert board["aopc_lerf_trusted"].isna().all()  # not meta-evaluated: no verdict
    assert {"family_rank_trusted", "rank_faithfulness_trusted"} <= set(board.columns)
    assert (first.run_dir / "plots" / "meta-parts.png").is_file()
    assert (first.run_dir / "plots" / "rank-stability.png").is_file()
    again = run(parse(raw(tmp_path), name="meta", source="test.toml"), progress=False)
    assert not any(again.cells[c.name]["computed"] for c in cells)
    pd.testing.assert_frame_equal(pd.read_csv(again.run_dir / "meta.csv"), meta)
    lost = next(c for c in cells if c.name == "resnet18/deletion/input_adversary/0")
    lost.path.unlink()  # as if the run had been killed before this cell was written
    resumed = run(parse(raw(tmp_path), name="meta", source="test.toml"), progress=False)
    assert [c.name for c in cells if resumed.cells[c.name]["computed"]] == [lost.name]
    pd.testing.assert_frame_equal(pd.read_csv(resumed.run_dir / "meta.csv"), meta)


def test_evaluate_takes_meta_and_needs_out():
    import torch

    import xaibench
    from xaibench.check.zoo import tiny_net

    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="meta: writes meta.csv to the run folder; give out= too"):
        xaibench.evaluate(tiny_net(), (images, labels, None), methods=["saliency"], metrics=["aopc"],
                          meta={"perturbations": 1}, progress=False)


def test_the_verdict_states_each_threshold_crossed():
    from xaibench.leaderboard.trusted import concerns
    from xaibench.report.trust import trust_table

    good = pd.Series({"mc": 0.7, "alpha": 0.8, "stability": 0.9})
    assert concerns(good) == []
    bad = pd.Series({"mc": 0.4, "alpha": 0.3, "stability": 0.2})
    assert concerns(bad) == ["MC 0.40 < 0.5", "alpha 0.30 < 0.667", "rank stability 0.20 < 0.5"]
    assert concerns(pd.Series({"mc": float("nan"), "alpha": 0.9}))[0].startswith("MC undecided")
    table = trust_table(pd.DataFrame([{"model": "m", "metric": "aopc", **good}]))
    assert table["verdict"].tolist() == ["passes"]
    failing = trust_table(pd.DataFrame([{"model": "m", "metric": "aopc", **bad}]))
    assert failing["verdict"].iloc[0].startswith("fails: MC 0.40 < 0.5")


def test_predicted_targets_can_be_explained():
    """The meta-evaluation's predictions are made under no_grad, not inference mode: the methods
    save them for backward (captum gathers the target)."""
    import torch

    from xaibench.check.zoo import tiny_net
    from xaibench.run.meta import predictions

    preds = predictions(tiny_net(), torch.rand(3, 3, 8, 8), 2)
    assert not preds.is_inference()


def test_a_meta_key_set_on_the_command_line_is_named_in_the_error():
    from xaibench.config import load

    with pytest.raises(ConfigError, match=r"^--set meta.perturbations=0: \[meta\] perturbations"):
        load("synthetic_meta", ["meta.perturbations=0"])
    config = load("synthetic_meta")
    assert config.meta.perturbations == 2 and len(config.meta.variants["aopc"]) == 6


def test_a_metric_that_ranks_nothing_is_refused(tmp_path, monkeypatch):
    from xaibench.metrics.aopc import AOPC

    monkeypatch.setattr(AOPC, "directions", {"aopc": None})
    with pytest.raises(ConfigError, match=r"\[meta\] metrics: aopc rank no method"):
        parse(raw(tmp_path), name="meta", source="test.toml")
