"""Few-label selection: exact per-class counts, nesting, seeding, a disjoint holdout, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hpm.data.labels import LabelCount, label_holdout, label_quotas, labelled_subset, parse_labels
from hpm.errors import ConfigError, DataError


def _labels(per_class: list[int], seed: int = 0) -> np.ndarray:
    """Shuffled integer labels with ``per_class[c]`` images of class c."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    return np.random.default_rng(seed).permutation(labels)


BALANCED = _labels([600] * 10)  # 6 000 images, 10 classes (Fashion-MNIST's train split / 10)


@pytest.mark.parametrize("n", [10, 60, 600, 1200, 6000])
def test_a_balanced_split_gives_every_class_the_same_count(n: int) -> None:
    chosen = labelled_subset(BALANCED, n, seed=0)
    assert len(chosen) == n and len(np.unique(chosen)) == n
    assert np.bincount(BALANCED[chosen], minlength=10).tolist() == [n // 10] * 10


def test_a_remainder_goes_one_each_to_some_classes() -> None:
    counts = np.bincount(BALANCED[labelled_subset(BALANCED, 605, seed=3)], minlength=10)
    assert sorted(counts.tolist()) == [60] * 5 + [61] * 5


def test_smaller_sets_lie_inside_larger_ones() -> None:
    for seed in (0, 1, 7):
        sets = [set(labelled_subset(BALANCED, n, seed).tolist()) for n in (10, 13, 60, 61, 600, 601, 6000)]
        for small, large in zip(sets, sets[1:]):
            assert small < large


def test_the_choice_depends_on_the_seed_only() -> None:
    a, b = labelled_subset(BALANCED, 60, seed=4), labelled_subset(BALANCED, 60, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, labelled_subset(BALANCED, 60, seed=5))
    assert np.all(np.diff(a) > 0)  # sorted indices


def test_a_small_class_gives_all_it_has_and_the_others_make_up_the_rest() -> None:
    labels = _labels([3, 50, 50])
    chosen = labelled_subset(labels, 30, seed=0)
    counts = np.bincount(labels[chosen])
    assert counts[0] == 3 and sorted(counts[1:].tolist()) == [13, 14]
    assert set(labelled_subset(labels, 9, seed=0).tolist()) < set(chosen.tolist())  # still nested past the cap
    assert np.bincount(labels[labelled_subset(labels, 103, seed=0)]).tolist() == [3, 50, 50]


def test_quotas_never_shrink_as_the_count_grows() -> None:
    counts = np.array([2, 9, 5, 30])
    order = np.array([2, 0, 3, 1])
    previous = np.zeros(4, dtype=np.int64)
    for n in range(int(counts.sum()) + 1):
        quotas = label_quotas(counts, n, order)
        assert quotas.sum() == n and np.all(quotas <= counts) and np.all(quotas >= previous)
        open_quotas = quotas[counts > quotas]  # classes with images left: within one of each other
        if open_quotas.size:
            assert open_quotas.max() - open_quotas.min() <= 1
            assert np.all(quotas <= open_quotas.min() + 1)  # and no class more than one above them
        previous = quotas


def test_the_holdout_is_disjoint_balanced_and_the_same_for_every_label_count() -> None:
    holdouts = []
    for n in (10, 60, 600, 3000):
        chosen = labelled_subset(BALANCED, n, seed=2)
        held = label_holdout(BALANCED, n, 1000, seed=2)
        assert np.intersect1d(chosen, held).size == 0
        assert np.bincount(BALANCED[held], minlength=10).tolist() == [100] * 10
        holdouts.append(held)
    assert all(np.array_equal(holdouts[0], h) for h in holdouts[1:])
    # all images of a class, labelled or held out: still disjoint
    assert np.intersect1d(labelled_subset(BALANCED, 3000, 2), label_holdout(BALANCED, 3000, 3000, 2)).size == 0


def test_a_holdout_that_does_not_fit_beside_the_labels_is_refused() -> None:
    with pytest.raises(DataError, match="need 601 images of class .* which has 600; hold out fewer"):
        label_holdout(BALANCED, 3000, 3010, seed=0)


@pytest.mark.parametrize(("n", "message"), [(9, "cannot cover the 10 classes"), (6001, "has only 6000")])
def test_impossible_counts_are_clear_errors(n: int, message: str) -> None:
    with pytest.raises(DataError, match=message):
        labelled_subset(BALANCED, n, seed=0)


@pytest.mark.parametrize(
    ("text", "count", "tag"),
    [("600", 600, "l600"), (600, 600, "l600"), ("1%", 600, "l1pct"), ("10 %", 6000, "l10pct"), ("0.5%", 300, "l0.5pct"),
     ("100%", 60000, "l100pct")],
)
def test_labels_are_a_count_or_a_share(text: str | int, count: int, tag: str) -> None:
    labels = parse_labels(text)
    assert labels.resolve(60000) == count and labels.tag == tag


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "at least 1"), ("0%", r"\(0, 100\]"), ("150%", r"\(0, 100\] %, got 150%"), ("-5", "a count"),
     ("abc", "a count"), ("", "a count"), ("1e3", "a count"), (True, "a count")],
)
def test_bad_labels_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_labels(text)


def test_a_share_or_count_that_does_not_fit_the_split_is_refused() -> None:
    with pytest.raises(DataError, match="is no image"):
        LabelCount(percent=0.001).resolve(1000)
    with pytest.raises(DataError, match="only 100"):
        LabelCount(count=101).resolve(100)
