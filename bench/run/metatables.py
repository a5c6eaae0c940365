"""The meta-evaluation's tables from its cells (:mod:`xaibench.run.meta`) and the run's own
scores: meta.csv (one row per model and metric: MC and its parts, Krippendorff's alpha,
inter-method rho, internal consistency, rank stability) and rank_stability.csv. Kept apart from
the module that computes the cells, so that a change to an estimator recomputes no cell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaibench.meta import consistency, reliability, stability
from xaibench.run.execute import Results
from xaibench.run.meta import MetaScored, spec_of
from xaibench.run.plan import Plan


def unperturbed(results: Results, model_id: str, metric_id: str, plugin: str,
                methods: list[str]) -> np.ndarray:
    """[M, N] the run's own per-image scores (main column) of ``methods`` on every test image."""
    found = {s.cell.parts[1]: s.scores[plugin].numpy() for s in results.scored
             if s.cell.parts[0] == model_id and s.cell.parts[2] == metric_id}
    return np.stack([found[m].astype(float) for m in methods])


def consistency_row(cells: list[MetaScored], q: np.ndarray, higher: bool) -> dict[str, float]:
    """MC and its parts from the test cells of one (model, metric); ``q`` [M, n]."""
    parts: dict[str, list] = {t: [] for t in consistency.TESTS}
    for c in sorted(cells, key=lambda c: c.cell.name):
        test = c.cell.parts[2]
        keep = consistency.kept(c.base.numpy(), c.predictions.numpy(), test)
        parts[test].append(consistency.test_parts(q, c.scores.numpy().astype(float), keep, test=test,
                                                  higher=higher))
    return consistency.meta_consistency(parts)


def sweep_rows(cells: list[MetaScored], model_id: str, metric_id: str,
               higher: bool) -> tuple[float, list[dict]]:
    """Rank stability of one (model, metric): (mean Kendall tau, rows of rank_stability.csv)."""
    if not cells:
        return float("nan"), []
    cells = sorted(cells, key=lambda c: int(c.cell.parts[3]))
    means = np.stack([np.nanmean(c.scores[0].numpy().astype(float), axis=1) for c in cells])
    freq = stability.rank_frequencies(means, higher=higher)
    rows = [{"model": model_id, "metric": metric_id, "method": m, "rank": r + 1, "share": freq[i, r],
             "settings": len(cells)} for i, m in enumerate(cells[0].methods) for r in range(len(freq))]
    return stability.stability(means), rows


def meta_tables(plan: Plan, results: Results, meta: list[MetaScored]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(meta.csv: one row per model and metric; rank_stability.csv: per model, metric, method and
    rank the share of the sweep's settings in which the method takes that rank)."""
    rows, ranks = [], []
    for model_id in dict.fromkeys(c.cell.parts[0] for c in meta):
        mine = [c for c in meta if c.cell.parts[0] == model_id]
        signed = {}
        for metric_id in dict.fromkeys(c.cell.parts[1] for c in mine):
            spec, cells = spec_of(plan, metric_id), [c for c in mine if c.cell.parts[1] == metric_id]
            higher = bool(spec.instance.direction(spec.plugin))
            tests = [c for c in cells if c.cell.parts[2] != "sweep"]
            q = unperturbed(results, model_id, metric_id, spec.plugin, tests[0].methods if tests
                            else cells[0].methods)
            signed[metric_id] = (q, higher)
            row = consistency_row(tests, q[:, :tests[0].scores.shape[2]], higher) if tests else {}
            sweep = [c for c in cells if c.cell.parts[2] == "sweep"]
            tau, found = sweep_rows(sweep, model_id, metric_id, higher)
            ranks += found
            rows.append({"model": model_id, "metric": metric_id, "direction": "higher" if higher else "lower",
                         **row, "alpha": reliability.inter_rater(q, higher=higher),
                         "inter_method_rho": reliability.inter_method(q), "stability": tau,
                         "methods": q.shape[0], "images": q.shape[1]})
        inner = reliability.internal_consistency({k: v[0] for k, v in signed.items()},
                                                 {k: v[1] for k, v in signed.items()})
        for i, row in enumerate(r for r in rows if r["model"] == model_id):
            others = np.delete(inner[i], i)
            row["internal_consistency"] = (float(np.nanmean(others)) if np.isfinite(others).any()
                                           else float("nan"))
    return pd.DataFrame(rows), pd.DataFrame(ranks)
