"""Rankings no more decisive than the evidence, on constructed score tables: tied ranks from
paired tests, the chance flag, the "not better than a control" flag, the agreement left out below
four methods, the gallery's images, and the report's wording."""

import io

import numpy as np
import pandas as pd
import pytest
import torch

from xaibench.leaderboard import agreement, ranking, statistics
from xaibench.report import render as report


def long(values: dict[str, np.ndarray], *, model: str = "m", metric: str = "x",
         higher: bool | None = True) -> pd.DataFrame:
    """Per-image scores {method: [N]} in the leaderboard's long format."""
    return pd.concat([pd.DataFrame({"model": model, "method": m, "metric": metric,
                                    "higher_is_better": higher, "index": np.arange(len(v)),
                                    "value": v}) for m, v in values.items()], ignore_index=True)


def board_of(scores: pd.DataFrame, controls=(), accuracy: float = 1.0) -> pd.DataFrame:
    models = pd.DataFrame({"model": sorted(scores["model"].unique()), "accuracy": accuracy})
    return statistics.summarise(scores, models, dataset="d", n_boot=200, seed=0,
                        controls=list(controls)).set_index("method")


def noisy(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- tied ranks ---------------------------------------------------------------------------------


def test_identical_scores_share_a_rank_and_clearly_different_ones_do_not():
    rng = noisy(0)
    base = rng.normal(size=48)
    board = board_of(long({"a": base + 2, "b": base + 2, "c": base, "d": base - 2}))
    assert board.loc["a", "x_rank"] == board.loc["b", "x_rank"] == 1
    assert board.loc["a", "x_rank_worst"] == board.loc["b", "x_rank_worst"] == 2
    assert (board.loc["c", "x_rank"], board.loc["c", "x_rank_worst"]) == (3, 3)
    assert (board.loc["d", "x_rank"], board.loc["d", "x_rank_worst"]) == (4, 4)
    assert board.loc["a", "mean_rank"] == board.loc["b", "mean_rank"] == 1.5  # the midpoint


def test_noisy_equal_scores_share_a_rank():
    rng = noisy(1)
    base = rng.normal(size=48)
    # b has the same expected score as a, with independent per-image noise: its mean differs a
    # little by chance, which a mean-based rank would report as a strict order
    a, b = base + 1, base + 1 + rng.normal(scale=0.2, size=48)
    assert a.mean() != b.mean()
    board = board_of(long({"a": a, "b": b, "low": base - 1}, higher=False))
    for m in ("a", "b"):
        assert (board.loc[m, "x_rank"], board.loc[m, "x_rank_worst"]) == (2, 3)
    assert (board.loc["low", "x_rank"], board.loc["low", "x_rank_worst"]) == (1, 1)  # lower is better


def test_float_noise_between_equal_maps_is_not_evidence():
    v = np.linspace(0.1, 0.9, 30)
    board = board_of(long({"a": v, "b": v * (1 + 1e-12)}))
    assert (board["x_rank"] == 1).all() and (board["x_rank_worst"] == 2).all()


def test_a_pair_whose_signed_ranks_contradict_the_means_shares_ranks():
    """Better on 44 of 48 images by a little, worse on 4 by a lot: the mean says worse, the
    signed-rank test (significant) says better. The leaderboard claims neither order, and the
    method does not "beat" a control whose mean is better (it did both before: a deletion column
    of the reference run ranked integrated gradients #7 and flagged it as beating the controls)."""
    base = noisy(7).normal(size=48)
    skewed = base + np.where(np.arange(48) < 44, 0.1, -5.0)
    assert ranking.paired_p(skewed, base) < 1e-3 and skewed.mean() < base.mean()
    assert ranking.signed_rank_sign(skewed, base) == 1
    board = board_of(long({"plain": base, "skewed": skewed}))
    assert board[["x_rank", "x_rank_worst"]].to_numpy().tolist() == [[1, 2], [1, 2]]
    board = board_of(long({"random": base, "skewed": skewed}), controls=["random"])
    assert board.loc["skewed", "x_beats_controls"] is False
    far = base + 1.0  # better on every image and in the mean: both orders agree
    board = board_of(long({"plain": base, "skewed": skewed, "far": far}), controls=["plain"])
    assert board.loc["far", "x_rank"] == board.loc["far", "x_rank_worst"] == 1
    assert board.loc["far", "x_beats_controls"] is True


def test_rank_ranges_are_not_transitive_cliques():
    # a > c and b > d significantly, neighbours not: ranges overlap like "1-2", "1-3", "2-4", "3-4"
    significant = np.array([[0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)
    best, worst = ranking.rank_intervals(np.array([4.0, 3.0, 2.0, 1.0]), significant, higher=True)
    assert best.tolist() == [1, 1, 2, 3] and worst.tolist() == [2, 3, 4, 4]
    assert [ranking.rank_text(b, w) for b, w in zip(best, worst)] == ["#1-2", "#1-3", "#2-4", "#3-4"]
    assert ranking.rank_text(2.0, 2.0) == "#2" and ranking.rank_text(float("nan"), 1.0) == ""


def test_holm_by_hand():
    got = ranking.holm(np.array([0.01, 0.04, 0.03, 0.2]))
    # sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1 = 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.2
    assert got == pytest.approx([0.04, 0.09, 0.09, 0.2])


def test_paired_p_is_scipys_wilcoxon_on_the_shared_images():
    from scipy.stats import wilcoxon

    rng = noisy(2)
    a, b = rng.normal(size=20), rng.normal(size=20) + 0.5
    a[3], b[7] = np.nan, np.nan  # each undefined on one image: compared on the 18 shared ones
    ok = np.isfinite(a) & np.isfinite(b)
    assert ranking.paired_p(a, b) == pytest.approx(wilcoxon(a[ok] - b[ok]).pvalue)
    assert ranking.paired_p(np.ones(5), np.ones(5)) == 1.0


def test_one_image_cannot_rank():
    board = board_of(long({"a": np.array([1.0]), "b": np.array([0.0])}))
    assert (board["x_rank"] == 1).all() and (board["x_rank_worst"] == 2).all()


def test_the_leaderboard_is_byte_identical_run_to_run():
    rng = noisy(3)
    scores = long({m: rng.normal(size=40) + i * 0.2 for i, m in enumerate("abcde")})

    def csv() -> str:
        models = pd.DataFrame({"model": ["m"], "accuracy": [0.9]})
        board = statistics.summarise(scores, models, dataset="d", n_boot=200, seed=0, controls=["a"])
        return board.to_csv(index=False, float_format="%.6g")
    assert csv() == csv()


# -- the chance flag ----------------------------------------------------------------------------


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for k, n in ((32, 64), (60, 64), (0, 10), (10, 10)):
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert ranking.wilson_interval(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_a_model_at_chance_is_flagged():
    labels = np.array([0] * 32 + [1] * 32)
    models = pd.DataFrame({"model": ["chance", "good", "close"], "accuracy": [0.5, 0.95, 0.6]})
    out = ranking.chance_columns(models, labels).set_index("model")
    assert (out["chance"] == 0.5).all()
    assert out["above_chance"].to_dict() == {"chance": False, "good": True, "close": False}
    assert out.loc["close", "accuracy_ci_low"] < 0.5 < out.loc["close", "accuracy_ci_high"]
    # imbalanced labels: 90% accuracy is what always answering the majority class gets
    skewed = ranking.chance_columns(pd.DataFrame({"model": ["m"], "accuracy": [0.9]}),
                                    np.array([1] * 90 + [0] * 10))
    assert skewed["chance"].iloc[0] == pytest.approx(0.9) and not skewed["above_chance"].iloc[0]


def test_the_chance_flag_reaches_the_leaderboard_and_the_top_of_the_report():
    labels = np.array([0, 1] * 32)
    rng = noisy(4)
    scores = pd.concat([long({"a": rng.normal(size=64), "b": rng.normal(size=64) + 3}, model=m)
                        for m in ("at_chance", "fine")], ignore_index=True)
    models = ranking.chance_columns(pd.DataFrame({"model": ["at_chance", "fine"], "accuracy": [0.5, 1.0]}),
                                    labels)
    board = statistics.summarise(scores, models, dataset="d", n_boot=200, seed=0)
    flags = board.drop_duplicates("model").set_index("model")["above_chance"].to_dict()
    assert flags == {"at_chance": False, "fine": True}
    back = pd.read_csv(io.StringIO(board.to_csv(index=False)))  # what the report reads
    (warning,) = report.chance_warnings(back)
    assert "`at_chance` is not above chance" in warning
    assert "rankings on this model are not meaningful" in warning
    table = report.summary_table(back, None)
    assert set(table["model"]) == {"at_chance (at chance)", "fine"}


# -- the control flag ----------------------------------------------------------------------------


def test_a_method_not_better_than_the_best_control_is_flagged():
    rng = noisy(5)
    base = rng.normal(size=48)
    board = board_of(long({"random": base, "center": base + 0.5,            # center: best control
                           "good": base + 2, "like_center": base + 0.5 + rng.normal(scale=0.3, size=48),
                           "bad": base - 1}), controls=["random", "center"])
    flags = board["x_beats_controls"].to_dict()
    assert flags == {"random": None, "center": None, "good": True, "like_center": False, "bad": False}
    back = pd.read_csv(io.StringIO(board.reset_index().to_csv(index=False)))
    assert back.set_index("method")["x_beats_controls"].isna().loc[["random", "center"]].all()
    cells = report.summary_table(back, None).set_index("method")["x ↑"]
    assert cells["like_center"].endswith("not better than center")
    assert cells["bad"].endswith("not better than center")
    assert "not better" not in cells["good"] and "not better" not in cells["random (control)"]


def test_lower_is_better_controls_and_no_controls():
    rng = noisy(6)
    base = rng.normal(size=40)
    board = board_of(long({"random": base, "good": base - 2}, higher=False), controls=["random"])
    assert board.loc["good", "x_beats_controls"] is True
    board = board_of(long({"a": base, "b": base - 2}))
    assert board["x_beats_controls"].isna().all()  # nothing to compare with


# -- metric agreement below four methods ----------------------------------------------------------


def agreement_board(k: int) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "d", "model": "m", "method": [f"m{i}" for i in range(k)],
                         "x_mean": np.arange(k, dtype=float), "x_direction": "higher",
                         "y_mean": np.arange(k, dtype=float)[::-1], "y_direction": "lower"})


def test_agreement_is_left_out_below_four_methods(tmp_path):
    three = agreement_board(3)
    matrix = agreement.agreement(three)
    assert matrix.isna().all().all() and not agreement.agreement_shown(matrix)
    (_, line) = report.agreement_parts(three)
    assert line.startswith("Left out") and "±1/3" in line
    four = agreement_board(4)
    assert agreement.agreement_shown(agreement.agreement(four))
    assert agreement.agreement(four).loc["x", "y"] == pytest.approx(1.0)
    assert (agreement.agreement_methods(four) == "4").all().all()
    parts = report.agreement_parts(four)
    assert "1.00 (n=4)" in parts[-1]
    from xaibench.report import plots

    plots.agreement_heatmap(agreement.agreement(four), tmp_path / "a.png", title="t",
                            methods=agreement.agreement_methods(four))
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_agreement_states_the_range_of_methods_over_models():
    board = pd.concat([agreement_board(4), agreement_board(6).assign(model="n"),
                       agreement_board(3).assign(model="o")], ignore_index=True)
    assert agreement.agreement_methods(board).loc["x", "y"] == "4-6"  # the 3-method model is left out


# -- gallery, curves, labels ----------------------------------------------------------------------


def test_gallery_takes_every_class_round_robin_regions_first():
    from xaibench.datasets.splits import Split
    from xaibench.run.execute import gallery_indices

    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0])
    masks = torch.zeros(8, 4, 4, dtype=torch.bool)
    masks[[2, 5], 1, 1] = True  # image 2 (class 0) and 5 (class 1) have a region
    split = Split(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), labels, masks)
    assert gallery_indices(split, 4) == [2, 5, 6, 0]
    assert gallery_indices(Split(split.images, labels), 6) == [0, 4, 6, 1, 5, 2]  # no masks


def test_curve_bands_are_the_leaderboards_bootstrap():
    rng = noisy(7)
    values = rng.normal(size=(30, 3))
    curves = pd.DataFrame({"model": "m", "method": "a", "index": np.repeat(np.arange(30), 3),
                           "step": np.tile(np.arange(3), 30), "value": values.ravel()})
    summary = statistics.curve_summary(curves, "step", "value", n_boot=200, seed=3)
    for s in range(3):
        row = summary[summary["step"] == s].iloc[0]
        assert row["mean"] == pytest.approx(values[:, s].mean())
        assert (row["ci_low"], row["ci_high"]) == statistics.bootstrap_ci(values[:, s], n_boot=200, seed=3)


def test_controls_are_grey_and_dashed():
    from xaibench.report.plots import line_styles

    styles = line_styles(["gradcam", "random", "saliency", "center"], ["random", "center"])
    assert list(styles)[:2] == ["gradcam", "saliency"]
    for m in ("random", "center"):
        grey = float(styles[m]["color"])  # a matplotlib grey level
        assert 0 < grey < 1 and styles[m]["linestyle"] != "-"
    assert styles["gradcam"]["linestyle"] == "-" and styles["random"] != styles["center"]


def test_report_shows_non_default_parameters_beside_the_method(tmp_path):
    """The labels come from the manifest, which records each method's parameters and which differ
    from its plugin's defaults (the report reads nothing else)."""
    from xaibench.config import parse
    from xaibench.run.plan import plan
    from xaibench.run.writer import declared

    raw = {"run": {"out": str(tmp_path), "device": "cpu"},
           "dataset": {"name": "synthetic", "image_size": 32, "n_train": 8, "n_val": 4, "n_test": 4,
                       "radius": [3, 6], "n_shapes": [1, 3]},
           "models": {"resnet18": {"arch": "resnet18"}},
           "methods": {"integrated_gradients": {"baseline": "white"},
                       "ig_default": {"plugin": "integrated_gradients", "baseline": "black"}, "gradcam": {}},
           "metrics": {"aopc": {}}}
    labels = report.method_labels(declared(plan(parse(raw, name="t", source="t"))))
    assert labels["integrated_gradients"] == "integrated_gradients (baseline='white')"
    assert labels["ig_default"] == "ig_default (integrated_gradients)"
    assert labels["gradcam"] == "gradcam"


def test_a_method_undefined_on_every_image_is_not_ranked():
    v = np.linspace(0, 1, 12)
    board = board_of(long({"a": v, "b": v + 1, "none": np.full(12, np.nan)}))
    assert np.isnan(board.loc["none", "x_rank"]) and np.isnan(board.loc["none", "x_rank_worst"])
    assert (board.loc["b", "x_rank"], board.loc["b", "x_rank_worst"]) == (1, 1)
    assert (board.loc["a", "x_rank"], board.loc["a", "x_rank_worst"]) == (2, 2)  # last of two


def test_merged_runs_rank_by_the_paired_tests_over_run_and_image():
    """Merged runs are ranked by the single run's rule, with the (run, image) pairs as samples: a
    method better on 38 of 40 pairs but worse in the mean (two large losses) shares its ranks
    with the other; a method better everywhere ranks alone (raw means would order all three)."""
    from xaibench.leaderboard.merge import merge_runs

    rng = np.random.default_rng(0)
    boards, scores = {}, {}
    for run in ("seed0", "seed1"):
        v = rng.normal(size=20)
        c = v + 0.01
        c[:1] -= 5.0  # one large loss per run pulls c's mean below b's
        values = {"a": v + 1.0, "b": v, "c": c}
        scores[run] = pd.concat([pd.DataFrame({"dataset": "d", "model": "m", "method": k, "metric": "x",
                                               "higher_is_better": True, "index": np.arange(20), "value": x})
                                 for k, x in values.items()], ignore_index=True)
        boards[run] = pd.DataFrame({"dataset": "d", "model": "m", "method": list(values), "control": False,
                                    "accuracy": 1.0, "mean_rank": np.nan,
                                    "x_mean": [x.mean() for x in values.values()], "x_direction": "higher"})
    merged = merge_runs(boards, scores).set_index("method")
    assert merged.loc["b", "x_mean"] > merged.loc["c", "x_mean"]  # by the means, b before c
    assert (merged.loc["a", "x_rank"], merged.loc["a", "x_rank_worst"]) == (1, 1)
    for m in ("b", "c"):
        assert (merged.loc[m, "x_rank"], merged.loc[m, "x_rank_worst"]) == (2, 3)
    assert merged.loc["a", "mean_rank"] == 1 and merged.loc["b", "mean_rank"] == 2.5
