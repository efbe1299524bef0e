"""Seeded, class-balanced subsets of a labelled data set."""

from __future__ import annotations

import numpy as np

from hpm.errors import DataError


def _quotas(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Samples to take per class: equal shares, capped by class size, remainder spread."""
    quotas = np.zeros_like(counts)
    remaining = n
    while remaining > 0:
        open_classes = np.flatnonzero(quotas < counts)
        share, extra = divmod(remaining, len(open_classes))
        if share == 0:
            quotas[rng.choice(open_classes, size=extra, replace=False)] += 1
            break
        take = np.minimum(share, counts[open_classes] - quotas[open_classes])
        quotas[open_classes] += take
        remaining -= int(take.sum())
    return quotas


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Choose ``n`` samples with as equal a number per class as possible.

    A class with too few samples contributes all of them and the other classes make up
    the difference. The choice depends only on ``labels``, ``n`` and ``seed``.

    Args:
        labels: Integer class labels ``[N]``.
        n: Number of samples to choose.
        seed: Seed for ``numpy.random.default_rng``.

    Returns:
        Sorted int64 indices ``[n]`` into ``labels``.

    Raises:
        DataError: ``n`` is negative or larger than the number of samples.
    """
    labels = np.asarray(labels).reshape(-1)
    if not 0 <= n <= len(labels):
        raise DataError(f"cannot choose a subset of {n} samples from a data set of {len(labels)}")
    rng = np.random.default_rng(seed)
    _, counts = np.unique(labels, return_counts=True)
    quotas = _quotas(counts, n, rng)
    order = np.argsort(labels, kind="stable")  # indices grouped by class, in class order
    groups = np.split(order, np.cumsum(counts)[:-1])
    chosen = [rng.choice(group, size=int(q), replace=False) for group, q in zip(groups, quotas)]
    out = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return np.sort(out).astype(np.int64)
