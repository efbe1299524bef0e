"""Class-balanced subsets."""

from __future__ import annotations

import numpy as np
import pytest

from hpm.data.subset import balanced_subset
from hpm.errors import DataError


def _labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), 50))


def test_equal_counts() -> None:
    labels = _labels()
    indices = balanced_subset(labels, 100, seed=0)
    assert indices.dtype == np.int64 and len(indices) == 100
    assert np.all(np.diff(indices) > 0)  # sorted, no repeats
    assert np.bincount(labels[indices]).tolist() == [10] * 10


def test_remainder_is_spread() -> None:
    labels = _labels()
    counts = np.bincount(labels[balanced_subset(labels, 105, seed=3)], minlength=10)
    assert counts.sum() == 105 and sorted(counts.tolist()) == [10] * 5 + [11] * 5


def test_small_class_is_taken_whole() -> None:
    labels = np.array([0] * 20 + [1] * 20 + [2] * 3)
    indices = balanced_subset(labels, 30, seed=1)
    counts = np.bincount(labels[indices]).tolist()
    assert counts[2] == 3 and sorted(counts[:2]) == [13, 14] and len(indices) == 30


def test_deterministic_and_seeded() -> None:
    labels = _labels()
    a = balanced_subset(labels, 60, seed=7)
    assert np.array_equal(a, balanced_subset(labels, 60, seed=7))
    assert not np.array_equal(a, balanced_subset(labels, 60, seed=8))


def test_whole_and_empty() -> None:
    labels = _labels()
    assert np.array_equal(balanced_subset(labels, len(labels), seed=0), np.arange(len(labels)))
    assert len(balanced_subset(labels, 0, seed=0)) == 0


def test_too_many() -> None:
    with pytest.raises(DataError, match="501"):
        balanced_subset(_labels(), 501, seed=0)
