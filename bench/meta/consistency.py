"""MetaQuantus's meta-consistency (Hedström et al., "The Meta-Evaluation Problem in Explainable
AI: Identifying Reliable Estimators with MetaQuantus", TMLR 2023).

A metric is judged by four perturbation tests: model and input *resilience* (a perturbation that
should not change the explanations' quality: the scores should not move) and model and input
*adversary* (a perturbation that should disrupt them: the scores should get worse). For each
test and each of ``K`` perturbations, on the images the test keeps (resilience: the prediction is
unchanged; adversary: it flipped):

- IAC (intra-consistency), per method: the Wilcoxon signed-rank p-value between the unperturbed
  and the perturbed per-image scores (two-sided, zero differences split); p for resilience, 1 - p
  for adversary.
- IEC (inter-consistency), over the methods: resilience, the share of (image, rank position)
  whose method is the same before and after (the methods sorted by score per image); adversary,
  the share of (method, image) whose perturbed score is worse in the metric's direction.

MC is the mean of the four parts (IAC averaged over methods and perturbations, IEC over
perturbations, both over iterations, then over the resilience and adversary tests of the model
and the input perturbation). All functions here are pure numpy.

Arrays: ``q`` [M, N] unperturbed scores (methods x images); ``q_hat`` [K, M, N] perturbed scores;
``keep`` [K, N] bool, the images each perturbation keeps.
"""

from __future__ import annotations

import warnings

import numpy as np

TESTS = ("model_resilience", "model_adversary", "input_resilience", "input_adversary")
PARTS = ("iac_nr", "iac_ar", "iec_nr", "iec_ar")  # MetaQuantus's IAC_{NR}, IAC_{AR}, IEC_{NR}, IEC_{AR}


def is_adversary(test: str) -> bool:
    return test.endswith("adversary")


def kept(pred: np.ndarray, pred_hat: np.ndarray, test: str) -> np.ndarray:
    """[K, N] bool: the images a test keeps: resilience, those whose predicted class is unchanged
    by the perturbation; adversary, those whose predicted class changed. ``pred`` [N],
    ``pred_hat`` [K, N]."""
    same = np.asarray(pred_hat) == np.asarray(pred)[None, :]
    return ~same if is_adversary(test) else same


def wilcoxon_p(q: np.ndarray, q_hat: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value between paired scores, zero differences split
    between the ranks (``zero_method="zsplit"``, as MetaQuantus). NaN with no pair, 1.0 when
    every difference is zero."""
    from scipy.stats import wilcoxon

    q, q_hat = np.asarray(q, float), np.asarray(q_hat, float)
    if q.size == 0:
        return float("nan")
    if np.all(q == q_hat):
        return 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(wilcoxon(q, q_hat, alternative="two-sided", zero_method="zsplit").pvalue)


def iac(q: np.ndarray, q_hat: np.ndarray, keep: np.ndarray, *, adversary: bool) -> np.ndarray:
    """[M, K] intra-consistency of each method under each perturbation: the p-value of
    :func:`wilcoxon_p` on the kept images (resilience), or 1 - p (adversary); NaN where a
    perturbation keeps no image."""
    q, q_hat, keep = np.asarray(q, float), np.asarray(q_hat, float), np.asarray(keep, bool)
    out = np.array([[wilcoxon_p(q[m][keep[k]], q_hat[k, m][keep[k]]) for k in range(len(q_hat))]
                    for m in range(len(q))])
    return 1.0 - out if adversary else out


def iec_resilience(q: np.ndarray, q_hat: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[K] share of (kept image, rank position) that hold the same method before and after each
    perturbation (the methods sorted by score along axis 0, as MetaQuantus's ``np.argsort``)."""
    ranks = np.argsort(np.asarray(q, float), axis=0)  # [M, N]: the method at each position
    out = []
    for k in range(len(q_hat)):
        same = ranks == np.argsort(np.asarray(q_hat[k], float), axis=0)
        out.append(float(same[:, keep[k]].mean()) if keep[k].any() else float("nan"))
    return np.array(out)


def iec_adversary(q: np.ndarray, q_hat: np.ndarray, keep: np.ndarray, *, higher: bool) -> np.ndarray:
    """[K] share of (method, kept image) whose perturbed score is worse than the unperturbed one
    in the metric's direction (``higher``: higher is better, so worse means lower)."""
    q, q_hat = np.asarray(q, float), np.asarray(q_hat, float)
    worse = q_hat < q[None] if higher else q_hat > q[None]  # [K, M, N]
    return np.array([float(worse[k][:, keep[k]].mean()) if keep[k].any() else float("nan")
                     for k in range(len(q_hat))])


def scored_everywhere(q: np.ndarray, q_hat: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """[K, N] ``keep`` without the images some method has no score for, before or after the
    perturbation (e.g. a localisation metric on an image without an object): the tests compare
    the methods on the same images."""
    finite = np.isfinite(np.asarray(q, float)).all(0)[None] & np.isfinite(np.asarray(q_hat, float)).all(1)
    return np.asarray(keep, bool) & finite


def test_parts(q: np.ndarray, q_hat: np.ndarray, keep: np.ndarray, *, test: str,
               higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """One test, one iteration: (IAC [M, K], IEC [K]), on the kept images every method has a
    score for (:func:`scored_everywhere`)."""
    keep = scored_everywhere(q, q_hat, keep)
    adversary = is_adversary(test)
    intra = iac(q, q_hat, keep, adversary=adversary)
    inter = (iec_adversary(q, q_hat, keep, higher=higher) if adversary
             else iec_resilience(q, q_hat, keep))
    return intra, inter


def _mean(values: list[float]) -> float:
    """The mean of ``values``, NaN unless every one is finite (a part without evidence leaves
    the whole undecided rather than decided by the other parts)."""
    return float(np.mean(values)) if values and np.isfinite(values).all() else float("nan")


def meta_consistency(parts: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, float]:
    """MC and its four parts from each test's iterations of :func:`test_parts`
    ({test: [(IAC [M, K], IEC [K]) per iteration]}).

    Each part is averaged over methods, perturbations and iterations (perturbations that kept no
    image, NaN, are left out), separately for the model and the input perturbation
    (``model_iac_nr``, ..., ``model_mc``, ``input_mc``, as MetaQuantus reports them), and then
    over the two (``iac_nr``, ..., ``mc``). A part with no kept image at all is NaN, and so is
    every MC it enters: MetaQuantus instead counts a p-value it cannot compute as 0 (so an
    adversary IAC of 1)."""
    def part(test: str, which: int) -> float:
        values = [np.asarray(p[which], float).ravel() for p in parts.get(test, [])]
        flat = np.concatenate(values) if values else np.array([])
        return float(np.nanmean(flat)) if np.isfinite(flat).any() else float("nan")

    out = {}
    for kind in ("model", "input"):
        res, adv = f"{kind}_resilience", f"{kind}_adversary"
        four = [part(res, 0), part(adv, 0), part(res, 1), part(adv, 1)]
        out.update({f"{kind}_{p}": v for p, v in zip(PARTS, four)})
        out[f"{kind}_mc"] = _mean(four)
    for p in PARTS:
        out[p] = _mean([out[f"model_{p}"], out[f"input_{p}"]])
    out["mc"] = _mean([out[p] for p in PARTS])
    return out
