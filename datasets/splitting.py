"""Seeded, stratified train/val/test splits, optionally by group (e.g. patient).

Pure functions of labels, groups and a seed: the same inputs always give the same split, and no
global random state is read. Split sizes follow scikit-learn's ``train_test_split`` (a fraction
``f`` of ``n`` items puts ``ceil(f * n)`` items in the held-out part, the rule of the original
xML loaders); each class gets its share of a held-out part by the largest-remainder rule, so the
sizes are exact and every class keeps its proportion to within one item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from xaibench.plugins import DataError

Plan = tuple[list[int], list[int], list[int]]


def allocate(counts: Sequence[int], n: int) -> list[int]:
    """Share ``n`` items among strata of sizes ``counts`` proportionally (largest remainder).

    Each stratum gets ``floor(n * c / total)``; the items left over go to the strata with the
    largest remainders, ties to the earlier stratum. The shares sum to ``n`` and never exceed
    their stratum.
    """
    total = sum(counts)
    if not 0 <= n <= total:
        raise ValueError(f"cannot take {n} of {total} items")
    if n == 0:
        return [0] * len(counts)
    quotas = [Fraction(n * c, total) for c in counts]
    shares = [math.floor(q) for q in quotas]
    order = sorted(range(len(counts)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[:n - sum(shares)]:
        shares[i] += 1
    return shares


def held_out(n: int, fraction: float) -> int:
    """Items a held-out ``fraction`` of ``n`` items takes: ``ceil(fraction * n)``."""
    return min(n, math.ceil(round(fraction * n, 9)))


def stratified_split(strata: Sequence[int], *, n_test: int, n_val: int, seed: int) -> Plan:
    """Split items ``0..N-1`` into (train, val, test) index lists, stratified by ``strata``.

    ``n_test`` items are drawn first, then ``n_val`` from the rest, each shared among the strata
    by :func:`allocate`; within a stratum the items are taken in a random order drawn from
    ``numpy.random.default_rng([seed, stage])``. The lists come back sorted.
    """
    classes = sorted(set(strata))
    members = {c: [i for i, s in enumerate(strata) if s == c] for c in classes}
    rng = np.random.default_rng([seed, 0])
    pools = [[members[c][j] for j in rng.permutation(len(members[c]))] for c in classes]
    test: list[int] = []
    for pool, k in zip(pools, allocate([len(p) for p in pools], n_test)):
        test += pool[:k]
        del pool[:k]
    val: list[int] = []
    for pool, k in zip(pools, allocate([len(p) for p in pools], n_val)):
        val += pool[:k]
        del pool[:k]
    train = [i for pool in pools for i in pool]
    return sorted(train), sorted(val), sorted(test)


def grouped_split(
    labels: Sequence[int], groups: Sequence[str], *, test_fraction: float, val_fraction: float,
    seed: int, what: str,
) -> Plan:
    """Split images so that no group (e.g. patient) has images in two splits.

    Groups are stratified by their largest label (a patient with any positive image counts as
    positive, as in the xML loader); ``ceil(test_fraction * groups)`` groups go to test, then
    ``ceil(val_fraction * rest)`` to validation. Returns image index lists.

    Raises:
        DataError: when there are too few groups for three non-empty splits.
    """
    names = sorted(set(groups))
    position = {g: k for k, g in enumerate(names)}
    group_label = [0] * len(names)
    for label, g in zip(labels, groups):
        group_label[position[g]] = max(group_label[position[g]], label)
    n_test, n_val = split_sizes(len(names), test=held_out(len(names), test_fraction),
                                val_fraction=val_fraction, what=what)
    parts = stratified_split(group_label, n_test=n_test, n_val=n_val, seed=seed)
    where = {}
    for part, members in enumerate(parts):
        for k in members:
            where[names[k]] = part
    out: Plan = ([], [], [])
    for i, g in enumerate(groups):
        out[where[g]].append(i)
    return out


def split_sizes(n: int, *, test: int, val_fraction: float, what: str) -> tuple[int, int]:
    """(n_test, n_val) for ``n`` items with ``test`` held out for testing and a validation
    fraction of the rest.

    Raises:
        DataError: when train, val or test would be empty; ``what`` names the items
            (e.g. "12 images in data/imagenet_hvz/data.csv").
    """
    n_val = held_out(max(n - test, 0), val_fraction)
    if test < 1 or n_val < 1 or n - test - n_val < 1:
        raise DataError(f"{what}: too few for a train/val/test split ({n} in all, {test} for test, "
                        f"{n_val} for validation); add data or lower the held-out sizes")
    return test, n_val
