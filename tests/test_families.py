"""Ranks per family of metrics on constructed leaderboards: every family weighs the same in the
overall order, the spread of the ranks within a family, the model-independent mark, merged runs,
the report's columns, and the families a run writes into leaderboard.csv."""

import io

import numpy as np
import pandas as pd
import pytest

from xaibench.leaderboard import families, statistics
from xaibench.report import render as report


def long(values: dict[str, np.ndarray], *, metric: str, higher: bool | None = True,
         model: str = "m") -> pd.DataFrame:
    """Per-image scores {method: [N]} of one metric in the leaderboard's long format."""
    return pd.concat([pd.DataFrame({"model": model, "method": m, "metric": metric, "higher_is_better": higher,
                                    "index": np.arange(len(v)), "value": v}) for m, v in values.items()],
                     ignore_index=True)


def summarise(scores: pd.DataFrame, family_of: dict[str, str], controls=()) -> pd.DataFrame:
    models = pd.DataFrame({"model": sorted(scores["model"].unique()), "accuracy": 1.0})
    return statistics.summarise(scores, models, dataset="d", n_boot=50, seed=0, controls=list(controls),
                                families=family_of)


def one_family_winner(seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """Methods a, b, c on 24 images: a is clearly first on five faithfulness metrics and last on
    one localisation and one complexity metric, b second on faithfulness and first on the others."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=24)

    def scores(offsets: tuple[float, float, float]) -> dict[str, np.ndarray]:
        return {m: base + o + rng.normal(scale=0.05, size=24) for m, o in zip("abc", offsets)}
    parts = [long(scores((4, 2, 0)), metric=f"faith{i}") for i in range(5)]
    parts += [long(scores((0, 4, 2)), metric=m) for m in ("loc", "sparse")]
    family_of = {**{f"faith{i}": "faithfulness" for i in range(5)}, "loc": "localisation",
                 "sparse": "complexity"}
    return pd.concat(parts, ignore_index=True), family_of


def test_a_method_that_wins_one_family_only_is_not_first_overall():
    scores, family_of = one_family_winner()
    board = summarise(scores, family_of)
    by = board.set_index("method")
    assert by["faith0_rank"].to_dict() == {"a": 1, "b": 2, "c": 3}  # clear ranks, no ties
    assert by["loc_rank"].to_dict() == {"a": 3, "b": 1, "c": 2}
    # the old all-metrics mean rank puts a first: five faithfulness columns outvote two others
    assert by.loc["a", "mean_rank"] == pytest.approx(11 / 7)
    assert by.loc["b", "mean_rank"] == pytest.approx(12 / 7)
    assert by.loc["a", "mean_rank"] < by.loc["b", "mean_rank"]
    # per family, a wins faithfulness only: (1 + 3 + 3) / 3 against b's (2 + 1 + 1) / 3
    assert by.loc["a", "rank_faithfulness"] == 1 and by.loc["a", "rank_localisation"] == 3
    assert by.loc["a", "family_rank"] == pytest.approx(7 / 3)
    assert by.loc["b", "family_rank"] == pytest.approx(4 / 3)
    assert list(board["method"]) == ["b", "a", "c"]  # the leaderboard's order: family rank, then mean rank
    assert by.loc["a", "faith3_family"] == "faithfulness" and by.loc["a", "sparse_family"] == "complexity"
    # the family columns come before the secondary mean_rank, which stays
    cols = list(board.columns)
    assert cols.index("family_rank") < cols.index("rank_faithfulness") < cols.index("mean_rank")
    back = pd.read_csv(io.StringIO(board.to_csv(index=False)))  # what the report reads
    table = report.summary_table(back.iloc[::-1], None)  # the report orders the rows itself
    assert list(table["method"]) == ["b", "a", "c"]
    assert list(table.columns[:8]) == ["model", "method", "acc.", "family rank", "faithfulness",
                                       "localisation", "complexity", "mean rank (all metrics)"]
    assert table.iloc[1]["faithfulness"] == "1.00 (spread 0.00)" and table.iloc[1]["localisation"] == "3.00"


def constructed_board() -> pd.DataFrame:
    """Two methods with rank intervals set by hand: faithfulness columns p, q, r (and an
    informational column of the same family), one localisation column s; a column without a
    family (u) counts in the mean rank only."""
    columns = {"p": ((1, 1), (2, 2)), "q": ((2, 4), (1, 1)), "r": ((1, 3), (np.nan, np.nan)),
               "s": ((2, 2), (1, 1)), "u": ((1, 1), (2, 2))}
    board = pd.DataFrame({"model": "m", "method": ["a", "b"], "mean_rank": np.nan})
    for col, ranks in columns.items():
        board[f"{col}_direction"] = "higher"
        board[f"{col}_family"] = {"s": "localisation", "u": None}.get(col, "faithfulness")
        board[f"{col}_rank"] = [best for best, _ in ranks]
        board[f"{col}_rank_worst"] = [worst for _, worst in ranks]
    board["info_direction"], board["info_family"] = "none", "faithfulness"
    board["info_rank"] = board["info_rank_worst"] = np.nan
    return board


def test_the_spread_of_ranks_within_a_family():
    ranks = families.family_ranks(constructed_board()).set_index(pd.Index(["a", "b"]))
    # a's faithfulness midpoints 1, 3, 2: mean 2, spread (largest minus smallest) 2
    assert ranks.loc["a", "rank_faithfulness"] == 2 and ranks.loc["a", "rank_faithfulness_spread"] == 2
    # b is unranked on r (undefined on every image): left out of its mean and its spread
    assert ranks.loc["b", "rank_faithfulness"] == 1.5 and ranks.loc["b", "rank_faithfulness_spread"] == 1
    # one ranked column: no spread; u (no family) and the informational column are in no family
    assert ranks[["rank_localisation_spread"]].isna().all().all()
    assert list(ranks.columns) == ["family_rank", "rank_faithfulness", "rank_faithfulness_spread",
                                   "rank_localisation", "rank_localisation_spread"]
    assert ranks.loc["a", "family_rank"] == (2 + 2) / 2 and ranks.loc["b", "family_rank"] == (1.5 + 1) / 2


def test_a_board_without_families_keeps_its_mean_rank_order():
    scores, _ = one_family_winner()
    board = summarise(scores, {})
    assert board["family_rank"].isna().all() and board["model_independent"].isna().all()
    assert list(board["method"]) == ["a", "b", "c"]  # by mean_rank, as before families
    assert "family rank" not in report.summary_table(board.drop(columns=["family_rank"]), None)


def independence_scores() -> pd.DataFrame:
    """A randomisation metric (lower is better: the map's correlation with itself on a randomised
    model) where ``edges`` is as close to the control as ``random`` and ``grad`` far below it, and
    a faithfulness metric where both beat the control."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=32)
    sanity = long({"random": base + 1, "edges": base + 1 + rng.normal(scale=0.3, size=32),
                   "grad": base - 2 + rng.normal(scale=0.05, size=32)}, metric="sanity", higher=False)
    faith = long({"random": base, "edges": base + 2 + rng.normal(scale=0.05, size=32),
                  "grad": base + 3 + rng.normal(scale=0.05, size=32)}, metric="faith")
    return pd.concat([sanity, faith], ignore_index=True)


def test_a_method_not_better_than_a_control_on_randomisation_is_model_independent():
    family_of = {"sanity": "randomisation", "faith": "faithfulness"}
    board = summarise(independence_scores(), family_of, controls=["random"]).set_index("method")
    assert board["sanity_beats_controls"].to_dict() == {"random": None, "edges": False, "grad": True}
    assert board.loc["edges", "faith_beats_controls"]  # beating the control elsewhere does not count
    assert board["model_independent"].to_dict() == {"random": None, "edges": True, "grad": False}
    back = pd.read_csv(io.StringIO(board.reset_index().to_csv(index=False)))
    methods = set(report.summary_table(back, None)["method"])
    assert methods == {"random (control)", "edges (model-independent)", "grad"}
    # without a randomisation metric, or without a control, there is no evidence either way
    no_sanity = summarise(independence_scores(), {**family_of, "sanity": "complexity"}, controls=["random"])
    assert no_sanity["model_independent"].isna().all()
    assert summarise(independence_scores(), family_of)["model_independent"].isna().all()


def test_merged_runs_carry_the_family_columns_from_the_merged_ranks():
    from xaibench.leaderboard.merge import merge_runs

    boards, scores = {}, {}
    for run, seed in (("seed0", 0), ("seed1", 1)):
        s, family_of = one_family_winner(seed)
        scores[run] = s.assign(dataset="d")
        boards[run] = summarise(s, family_of)
    merged = merge_runs(boards, scores)
    assert list(merged["method"]) == ["b", "a", "c"]
    by = merged.set_index("method")
    assert by.loc["a", "faith0_family"] == "faithfulness" and by.loc["a", "loc_family"] == "localisation"
    mids = {m: (by[f"{m}_rank"] + by[f"{m}_rank_worst"]) / 2 for m in family_of}
    assert by["rank_faithfulness"].to_dict() == pytest.approx(
        pd.concat([mids[f"faith{i}"] for i in range(5)], axis=1).mean(1).to_dict())
    assert by.loc["b", "family_rank"] == pytest.approx(4 / 3)
    assert by.loc["a", "family_rank"] == pytest.approx(7 / 3)
    assert by.loc["a", "mean_rank"] < by.loc["b", "mean_rank"]  # still there, secondary
    assert by["model_independent"].isna().all()  # no control in these runs


def test_a_run_writes_each_metric_columns_family_into_its_leaderboard(tmp_path):
    from xaibench.config import parse
    from xaibench.run.runner import run

    raw = {"run": {"device": "cpu", "batch_size": 8, "bootstrap": 100, "out": str(tmp_path)},
           "dataset": {"name": "synthetic", "variant": "colour", "image_size": 32, "n_train": 16,
                       "n_val": 8, "n_test": 8, "radius": [3, 6], "n_shapes": [1, 3]},
           "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
           "methods": {"gradcam": {}, "random": {}},
           "metrics": {"aopc": {"patch_size": 8, "steps": 2}, "pompom": {}}}
    result = run(parse(raw, name="families", source="test"), progress=False)
    board = pd.read_csv(result.run_dir / "leaderboard.csv")
    written = {c[: -len("_family")]: board[c].iloc[0] for c in board.columns if c.endswith("_family")}
    assert written["aopc"] == written["aopc_lerf"] == written["aopc_gap"] == "faithfulness"
    assert {v for k, v in written.items() if k.startswith("pompom")} == {"localisation"}
    assert {"family_rank", "rank_faithfulness", "rank_faithfulness_spread", "rank_localisation",
            "model_independent", "mean_rank"} <= set(board.columns)
    assert board["model_independent"].isna().all()  # no randomisation metric in this run
    manifest = (result.run_dir / "manifest.json").read_text()
    assert '"family": "faithfulness"' in manifest


def failing_road() -> tuple[pd.DataFrame, dict[str, str], pd.DataFrame]:
    """Methods a, b, c on 24 images and two models: faithfulness metrics aopc (a first) and road
    (c first, the reverse), localisation loc (b first); road fails its meta-evaluation on model
    m1 (MC 0.3) and passes on m2, aopc and loc pass on both."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=24)

    def scores(offsets: tuple[float, float, float], metric: str, model: str) -> pd.DataFrame:
        return long({m: base + o + rng.normal(scale=0.05, size=24) for m, o in zip("abc", offsets)},
                    metric=metric, model=model)
    parts = [scores(offsets, metric, model) for model in ("m1", "m2")
             for metric, offsets in (("aopc", (4, 2, 0)), ("road", (0, 2, 4)), ("loc", (2, 4, 0)))]
    family_of = {"aopc": "faithfulness", "road": "faithfulness", "loc": "localisation"}
    meta = pd.DataFrame([{"model": model, "metric": metric, "alpha": 0.9, "stability": float("nan"),
                          "mc": 0.3 if (model, metric) == ("m1", "road") else 0.7}
                         for model in ("m1", "m2") for metric in family_of])
    return pd.concat(parts, ignore_index=True), family_of, meta


def test_ranks_from_the_metrics_that_pass_the_meta_evaluation():
    from xaibench.leaderboard import trusted

    scores, family_of, meta = failing_road()
    board = trusted.with_verdicts(summarise(scores, family_of), meta)
    m1, m2 = (board[board["model"] == m].set_index("method") for m in ("m1", "m2"))
    assert m1["road_trusted"].tolist() == [False] * 3 and m2["road_trusted"].tolist() == [True] * 3
    assert m1["aopc_trusted"].tolist() == [True] * 3
    # with road, the faithfulness family cannot tell the methods apart: (1 + 3) / 2 = 2 for each;
    # from the passing metrics alone (aopc) on m1 it ranks a, b, c
    assert m1["rank_faithfulness"].to_dict() == {"a": 2, "b": 2, "c": 2}
    assert m1["rank_faithfulness_trusted"].to_dict() == {"a": 1, "b": 2, "c": 3}
    assert m1["rank_faithfulness_trusted_spread"].isna().all()  # one passing column
    assert m2["rank_faithfulness_trusted"].to_dict() == m2["rank_faithfulness"].to_dict()
    # (faithfulness + localisation) / 2: a and b tie with road, a is ahead of c only without it
    assert m1["family_rank"].to_dict() == {"a": 2, "b": 1.5, "c": 2.5}
    assert m1["family_rank_trusted"].to_dict() == {"a": 1.5, "b": 1.5, "c": 3}
    # each verdict column after its metric's columns; the thresholds are the report's
    cols = list(board.columns)
    assert cols.index("road_beats_controls") + 1 == cols.index("road_trusted")
    assert trusted.concerns(meta.iloc[1]) == ["MC 0.30 < 0.5"]
    # what leaderboard.csv holds, as the report reads it back
    back = pd.read_csv(io.StringIO(board.to_csv(index=False)))
    table = report.summary_table(back, None)
    assert "road ↑ (fails meta on m1)" in table.columns and "aopc ↑" in table.columns
    row = table[(table["model"] == "m1") & (table["method"] == "a")].iloc[0]
    assert row["faithfulness"] == "2.00 (spread 2.00); passing: 1.00"
    assert row["family rank"] == "2.00; passing: 1.50"
    assert "(fails meta)" in report.meta_rule(back)[0]
    failing_everywhere = trusted.with_verdicts(board, meta.assign(mc=0.3))
    assert trusted.failing_models(failing_everywhere, "loc") == (["m1", "m2"], True)
    assert "loc ↑ (fails meta)" in report.summary_table(failing_everywhere, None).columns
    assert failing_everywhere["rank_localisation_trusted"].isna().all()


def test_a_board_without_verdicts_has_no_trusted_ranks():
    scores, family_of, _ = failing_road()
    board = summarise(scores, family_of)
    assert not any(c.endswith("_trusted") for c in board.columns)
    assert report.meta_rule(board) == []
    assert "road ↑" in report.summary_table(board, None).columns
