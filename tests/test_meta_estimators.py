"""The meta-evaluation's estimators against independent references: Krippendorff's alpha against
the krippendorff package, IAC against scipy's Wilcoxon, MetaQuantus's sanity estimators, and MC's
four parts against MetaQuantus's own code (lower is better) and by hand (higher is better)."""

import numpy as np
import pytest

from xaibench.meta import consistency as mc
from xaibench.meta import reliability as rel
from xaibench.meta import stability as st

RNG = np.random.default_rng(0)


def test_alpha_equals_the_krippendorff_package_on_the_same_rankings():
    krippendorff = pytest.importorskip("krippendorff")
    scores = RNG.normal(size=(5, 12)) + np.arange(5)[:, None] * 0.5  # 5 methods, 12 images
    scores[2, 3] = np.nan  # a missing score
    ranks = rel.ranks(scores, higher=True)
    expected = krippendorff.alpha(reliability_data=ranks.T, level_of_measurement="interval")
    assert rel.inter_rater(scores, higher=True) == pytest.approx(expected, abs=1e-12)
    assert rel.krippendorff_interval(ranks.T) == pytest.approx(expected, abs=1e-12)


def test_alpha_is_one_when_every_image_orders_the_methods_alike():
    scores = np.tile(np.arange(4.0)[:, None], (1, 6)) + RNG.uniform(0, 0.1, size=(4, 6))
    assert rel.inter_rater(scores, higher=False) == pytest.approx(1.0)


def test_iac_equals_scipys_wilcoxon_on_the_same_arrays():
    from scipy.stats import wilcoxon

    q = RNG.normal(size=(3, 20))
    q_hat = q[None] + RNG.normal(0, 0.5, size=(4, 3, 20))
    keep = RNG.uniform(size=(4, 20)) > 0.3
    got = mc.iac(q, q_hat, keep, adversary=False)
    adv = mc.iac(q, q_hat, keep, adversary=True)
    for m in range(3):
        for k in range(4):
            p = wilcoxon(q[m][keep[k]], q_hat[k, m][keep[k]], zero_method="zsplit").pvalue
            assert got[m, k] == pytest.approx(p, abs=1e-12)
            assert adv[m, k] == pytest.approx(1 - p, abs=1e-12)


def _parts(q, q_hat, keep, higher):
    return {t: [mc.test_parts(q, q_hat, keep, test=t, higher=higher)] for t in mc.TESTS}


def test_the_same_estimator_passes_resilience_and_fails_adversary():
    """MetaQuantus's Estimator_Same (perturbed scores = unperturbed): IAC_NR = IEC_NR = 1,
    IAC_AR = IEC_AR = 0, so MC = 0.5: it does not react to a disruptive perturbation."""
    q = RNG.uniform(size=(4, 30))
    q_hat = np.repeat(q[None], 5, axis=0)
    keep = np.ones((5, 30), bool)
    for higher in (True, False):
        out = mc.meta_consistency(_parts(q, q_hat, keep, higher))
        assert (out["iac_nr"], out["iac_ar"], out["iec_nr"], out["iec_ar"]) == (1.0, 0.0, 1.0, 0.0)
        assert out["mc"] == 0.5


def test_the_different_estimator_fails_resilience():
    """MetaQuantus's Estimator_Different (unperturbed scores from N(-1000..-2, 1), perturbed from
    N(0, 1)): the scores always move, so IAC_NR ~ 0 and IEC_NR near chance (1/M), and it passes
    the adversary tests only where moving up means worse (lower is better)."""
    m, n = 4, 40
    q = RNG.normal(loc=RNG.integers(-1000, -1), size=(m, n))
    q_hat = RNG.normal(size=(5, m, n))
    keep = np.ones((5, n), bool)
    out = mc.meta_consistency(_parts(q, q_hat, keep, higher=False))
    assert out["iac_nr"] < 1e-6 and out["iac_ar"] > 1 - 1e-6
    assert out["iec_nr"] < 0.5 and out["iec_ar"] == 1.0
    assert mc.meta_consistency(_parts(q, q_hat, keep, higher=True))["iec_ar"] == 0.0


def _metaquantus(q, q_hat, keeps, direction):
    """MetaQuantus's own IAC/IEC/MC code on given scores: q {test: [M, N]}, q_hat {test: [I, K, M, N]}."""
    mq = pytest.importorskip("metaquantus")
    names = {"model_resilience": "Model Resilience Test", "model_adversary": "Model Adversary Test",
             "input_resilience": "Input Resilience Test", "input_adversary": "Input Adversary Test"}
    methods = [f"m{i}" for i in range(q["model_resilience"].shape[0])]
    iters, k = q_hat["model_resilience"].shape[:2]
    ev = mq.MetaEvaluation(test_suite={names[t]: None for t in names}, xai_methods={m: {} for m in methods},
                           iterations=iters, nr_perturbations=k, write_to_file=False)
    ev.results_y_preds = np.zeros(q["model_resilience"].shape[1], int)
    for t, name in names.items():
        ev.results_eval_scores[name] = {m: q[t][i] for i, m in enumerate(methods)}
        ev.results_eval_scores_perturbed[name] = {it: {m: q_hat[t][it][:, i] for i, m in enumerate(methods)}
                                                  for it in range(iters)}
        ev.results_indices_perturbed[name] = {it: keeps[t][it] for it in range(iters)}
    ev.run_intra_analysis()
    ev.run_inter_analysis(score_direction=direction)
    return ev.run_meta_consistency_analysis()


def _setting(m=3, n=16, k=3, iters=2):
    q = {t: RNG.normal(size=(m, n)) for t in mc.TESTS}
    q_hat = {t: q[t][None, None] + RNG.normal(0, 0.3 if "res" in t else 1.0, size=(iters, k, m, n)) + (
        0.5 if "adv" in t else 0.0) for t in mc.TESTS}
    keeps = {t: RNG.uniform(size=(iters, k, n)) > 0.25 for t in mc.TESTS}
    return q, q_hat, keeps


def test_mc_parts_equal_metaquantus_code_for_a_lower_is_better_metric():
    q, q_hat, keeps = _setting()
    theirs = _metaquantus(q, q_hat, keeps, "lower")
    parts = {t: [mc.test_parts(q[t], q_hat[t][it], keeps[t][it], test=t, higher=False)
                 for it in range(q_hat[t].shape[0])] for t in mc.TESTS}
    ours = mc.meta_consistency(parts)
    for kind, label in (("model", "Model"), ("input", "Input")):
        res = theirs[label]["consistency_results"]
        assert ours[f"{kind}_iac_nr"] == pytest.approx(res["IAC_{NR} mean"], abs=1e-12)
        assert ours[f"{kind}_iac_ar"] == pytest.approx(res["IAC_{AR} mean"], abs=1e-12)
        assert ours[f"{kind}_iec_nr"] == pytest.approx(res["IEC_{NR} mean"], abs=1e-12)
        assert ours[f"{kind}_iec_ar"] == pytest.approx(res["IEC_{AR} mean"], abs=1e-12)
        assert ours[f"{kind}_mc"] == pytest.approx(theirs[label]["MC_mean"], abs=1e-12)


def test_metaquantus_code_inverts_the_adversary_test_for_a_higher_is_better_metric():
    """MetaQuantus tests its direction string for truth: "higher" counts a perturbed score that
    went up as worse. Here the direction is the metric's: by hand, for higher is better, a score
    that went down is worse."""
    q = np.array([[0.5, 0.5, 0.5], [0.2, 0.9, 0.4]])
    q_hat = np.array([[[0.4, 0.6, 0.5], [0.1, 0.8, 0.5]]])  # one perturbation
    keep = np.array([[True, True, False]])
    # kept (method, image) pairs: (0,0) down, (0,1) up, (1,0) down, (1,1) down -> 3 of 4 worse
    assert mc.iec_adversary(q, q_hat, keep, higher=True)[0] == 0.75
    assert mc.iec_adversary(q, q_hat, keep, higher=False)[0] == 0.25
    mq = pytest.importorskip("metaquantus")
    theirs = mq.MetaEvaluation.compute_iec_adversary(q, q_hat[0], keep[0], score_direction="higher")
    assert theirs == 0.25  # the lower-is-better answer


def test_iec_resilience_counts_rank_positions_that_keep_their_method():
    q = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 2.0]])
    q_hat = np.array([[[1.0, 3.5], [2.0, 3.0], [3.0, 2.0]]])  # image 1: every position changes
    assert mc.iec_resilience(q, q_hat, np.array([[True, True]]))[0] == pytest.approx(3 / 6)
    assert mc.iec_resilience(q, q_hat, np.array([[True, False]]))[0] == 1.0


def test_kept_images_follow_the_test():
    pred, hat = np.array([0, 1, 2]), np.array([[0, 2, 2]])
    assert mc.kept(pred, hat, "model_resilience").tolist() == [[True, False, True]]
    assert mc.kept(pred, hat, "input_adversary").tolist() == [[False, True, False]]


def test_inter_method_and_internal_consistency():
    a = RNG.normal(size=40)
    scores = np.stack([a, a * 2 + 1, -a])
    assert rel.spearman_matrix(scores)[0, 1] == pytest.approx(1.0)
    assert rel.inter_method(scores) == pytest.approx((1 - 1 - 1) / 3)
    inner = rel.internal_consistency({"x": scores, "y": -scores}, {"x": True, "y": False})
    assert inner[0, 1] == pytest.approx(1.0)


def test_rank_stability_counts_ranks_and_compares_settings():
    means = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.2], [0.4, 0.7, 0.3]])  # 3 settings x 3 methods
    freq = st.rank_frequencies(means, higher=True)
    assert freq[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert freq[2].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert np.allclose(freq.sum(1), 1.0)
    tau = st.kendall_matrix(means)
    assert tau[0, 1] == pytest.approx(1.0) and tau[0, 2] == pytest.approx(1 / 3)
    assert st.stability(means) == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)


def test_images_without_a_score_are_left_out_of_every_part():
    q = RNG.normal(size=(3, 10))
    q_hat = q[None] + RNG.normal(0, 0.1, size=(2, 3, 10))
    keep = np.ones((2, 10), bool)
    with_nan, nan_hat = q.copy(), q_hat.copy()
    with_nan[:, 4] = np.nan  # an image no method has a score for
    nan_hat[1, 0, 7] = np.nan
    got = mc.test_parts(with_nan, nan_hat, keep, test="input_resilience", higher=True)
    fewer = keep.copy()
    fewer[:, 4] = False
    fewer[1, 7] = False
    want = mc.test_parts(q, q_hat, fewer, test="input_resilience", higher=True)
    assert np.allclose(got[0], want[0]) and np.allclose(got[1], want[1])


@pytest.mark.slow
def test_model_parts_equal_metaquantus_loop_on_a_tiny_model(one_thread, monkeypatch):
    """MetaQuantus's own loop (MetaEvaluation with its model perturbation tests, its weight noise
    replaced by the same seeded draws) and xaibench's functions on a tiny CNN, AOPC over three
    methods (a higher-is-better metric, so MetaQuantus runs with score_direction=None, the reading
    under which its adversary IEC counts a lower score as worse)."""
    pytest.importorskip("metaquantus")
    import argparse
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import meta as bench
    finally:
        sys.path.pop(0)
    from xaibench.params import build
    from xaibench.registry import METHODS, METRICS

    args = argparse.Namespace(perturbations=2, iterations=1, seed=0, patch_size=4, steps=4,
                              estimator="xaibench")
    model = bench.cnn(0)
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = bench.predictions(model, images, len(images))
    methods = {m: build(METHODS.get(m), {}) for m in ("saliency", "sobel", "random")}
    metric = build(METRICS.get("aopc"), {"patch_size": 4, "steps": 4, "substrate": "black", "lerf": False})
    monkeypatch.setitem(bench.NOISE, "model_adversary", 1.0)  # enough flips for the adversary parts
    ours = bench.ours(model, images, targets, methods, metric, args)
    theirs = bench.theirs(model, images, methods, metric, args)["Model"]["consistency_results"]
    for part, name in (("iac_nr", "IAC_{NR} mean"), ("iec_nr", "IEC_{NR} mean")):
        assert ours[f"model_{part}"] == pytest.approx(float(theirs[name]), abs=1e-12)
    for part, name in (("iac_ar", "IAC_{AR} mean"), ("iec_ar", "IEC_{AR} mean")):
        assert ours[f"model_{part}"] == pytest.approx(float(theirs[name]), abs=1e-12)
