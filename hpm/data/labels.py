"""Few labels: nested, class-balanced sets of labelled images and a held-out set disjoint from them.

The semi-supervised protocol labels 1 % or 10 % of a training split; the 1 % set must lie inside
the 10 % set, so that the two figures differ by the labels only. One seeded permutation per class
fixes the order in which a class's images get labels, and the label quotas grow one image at a
time, round robin over the classes in a seeded order: the ``n`` labelled images are the first
``q_c(n)`` of each class's permutation, and ``q_c`` never shrinks as ``n`` grows, so a smaller set
lies inside every larger one (for any seed-sharing pair of counts). The held-out images, for
tuning a recipe, come from the other end of the same permutations: they are the same for every
label count and disjoint from the labelled set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from hpm.errors import ConfigError, DataError

_COUNT = re.compile(r"^\s*(\d+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


@dataclass(frozen=True)
class LabelCount:
    """How many training images keep their label: a count or a percentage of the split.

    Attributes:
        count: The number of labelled images (None: given as a percentage).
        percent: The share of the train split in % (None: given as a count).
    """

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ConfigError("give the labels as a count or as a percentage, e.g. 600 or 1%")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"the number of labelled images must be at least 1, got {self.count}")
        if self.percent is not None and not 0.0 < self.percent <= 100.0:
            raise ConfigError(f"the share of labelled images must be in (0, 100] %, got {self.percent:g}%")

    @property
    def tag(self) -> str:
        """A file- and key-safe name: ``l600``, ``l1pct``, ``l0.5pct``."""
        return f"l{self.count}" if self.count is not None else f"l{self.percent:g}pct"

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"

    def resolve(self, total: int) -> int:
        """The number of labelled images among ``total`` training images (a percentage is rounded).

        Raises:
            DataError: More labels than images, or a percentage that rounds to no image.
        """
        n = self.count if self.count is not None else round(total * self.percent / 100.0)  # type: ignore[operator]
        if n < 1:
            raise DataError(f"{self} of {total} training images is no image; give a larger share")
        if n > total:
            raise DataError(f"{n} labelled images asked for, but the train split has only {total}")
        return n


def parse_labels(value: str | int | LabelCount) -> LabelCount:
    """``"600"``, ``600`` or ``"1%"`` as a :class:`LabelCount`.

    Raises:
        ConfigError: Not a positive count or a percentage in (0, 100].
    """
    if isinstance(value, LabelCount):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"labels must be a count (e.g. 600) or a percentage (e.g. 1%), got {value!r}")
    if isinstance(value, int):
        return LabelCount(count=value)
    text = str(value)
    if m := _COUNT.match(text):
        return LabelCount(count=int(m.group(1)))
    if m := _PERCENT.match(text):
        percent = float(m.group(1))
        if not math.isfinite(percent):
            raise ConfigError(f"labels: {text!r} is not a percentage")
        return LabelCount(percent=percent)
    raise ConfigError(f"labels must be a count (e.g. 600) or a percentage (e.g. 1%), got {text!r}")


def _class_orders(labels: np.ndarray, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The seeded order of the classes and, per class, a seeded permutation of its indices."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    class_order = rng.permutation(len(classes))  # [C] positions into ``classes``
    perms = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]  # C x [N_c]
    return class_order, perms


def label_quotas(counts: np.ndarray, n: int, class_order: np.ndarray) -> np.ndarray:
    """Images per class when ``n`` are chosen one at a time, round robin over ``class_order``,
    skipping full classes: as equal as the class sizes allow, and never smaller for a larger ``n``.

    Args:
        counts: [C] images per class.
        n: Images to choose (at most ``counts.sum()``).
        class_order: [C] the order a round gives out its extra images in.

    Returns:
        [C] int64 quotas summing to ``n``.
    """
    quotas = np.zeros(len(counts), dtype=np.int64)
    remaining = n
    while remaining > 0:
        open_classes = class_order[quotas[class_order] < counts[class_order]]  # still has images, in order
        rounds = min(remaining // len(open_classes), int((counts[open_classes] - quotas[open_classes]).min()))
        if rounds > 0:  # whole rounds: every open class gets the same number
            quotas[open_classes] += rounds
            remaining -= rounds * len(open_classes)
            continue
        take = open_classes[:remaining]  # a partial round: the first classes in the order
        quotas[take] += 1
        remaining -= len(take)
    return quotas


def _check_count(labels: np.ndarray, n: int, what: str) -> np.ndarray:
    classes, counts = np.unique(labels, return_counts=True)
    if n > len(labels):
        raise DataError(f"{n} {what} asked for, but the train split has only {len(labels)} images")
    if n < len(classes):
        raise DataError(
            f"{n} {what} cannot cover the {len(classes)} classes of the train split; "
            f"give at least {len(classes)} (one per class)"
        )
    return counts


def labelled_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The ``n`` labelled images: class-balanced, seeded and nested (a smaller ``n`` with the same
    seed gives a subset of these).

    Args:
        labels: [N] integer class labels of the whole train split.
        n: How many images keep their label (at least one per class).
        seed: Chooses the images.

    Returns:
        Sorted int64 indices ``[n]`` into ``labels``.

    Raises:
        DataError: Fewer labels than classes, or more than images.
    """
    labels = np.asarray(labels).reshape(-1)
    counts = _check_count(labels, n, "labelled images")
    class_order, perms = _class_orders(labels, seed)
    quotas = label_quotas(counts, n, class_order)
    return np.sort(np.concatenate([p[:q] for p, q in zip(perms, quotas)])).astype(np.int64)


def label_holdout(labels: np.ndarray, n_labelled: int, n_holdout: int, seed: int) -> np.ndarray:
    """``n_holdout`` class-balanced images held out for tuning, disjoint from the ``n_labelled``
    of :func:`labelled_subset` with the same seed (and the same for every ``n_labelled``).

    They are taken from the far end of each class's permutation.

    Returns:
        Sorted int64 indices ``[n_holdout]`` into ``labels``.

    Raises:
        DataError: Fewer held-out images than classes, or a class without enough images for both
            its labelled and its held-out share.
    """
    labels = np.asarray(labels).reshape(-1)
    counts = _check_count(labels, n_holdout, "held-out images")
    _check_count(labels, n_labelled, "labelled images")
    class_order, perms = _class_orders(labels, seed)
    labelled = label_quotas(counts, n_labelled, class_order)
    # the reversed class order: the classes that got a labelled image extra give one less to the holdout
    held = label_quotas(counts, n_holdout, class_order[::-1])
    short = np.flatnonzero(labelled + held > counts)
    if len(short):
        c = int(short[0])
        raise DataError(
            f"{n_labelled} labelled and {n_holdout} held-out images need {labelled[c] + held[c]} images of class "
            f"{int(np.unique(labels)[c])}, which has {int(counts[c])}; hold out fewer images or label fewer"
        )
    return np.sort(np.concatenate([p[len(p) - h:] for p, h in zip(perms, held)])).astype(np.int64)
