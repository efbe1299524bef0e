"""Labelled evaluation data: a train split (memory bank / probe training) and a test split.

Fashion-MNIST: its ``train`` and ``test`` files. An ImageFolder: ``DIR/train/`` and ``DIR/val/`` (or
the same splits of a pack of shards, ``hpm data pack``); the unlabelled layouts that pre-training
also reads (:mod:`hpm.data.layout`) are refused with a one-line error.
With ``labels`` (the few-label protocol, :mod:`hpm.data.labels`) the train split is a nested,
class-balanced set of that many labelled images of the whole train split.
Images go through :func:`~hpm.data.build_eval_transform` at the model's image size (bicubic
resize of the shorter side, centre crop) and the normalisation the encoder was trained with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from hpm.config import DataConfig
from hpm.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImageDataset,
    SeededTransformDataset,
    balanced_subset,
    build_eval_transform,
    check_readable,
    load_fashion_mnist,
    open_image_dataset,
)
from hpm.data.labels import LabelCount, label_holdout, labelled_subset, parse_labels
from hpm.data.layout import no_labels_message
from hpm.errors import ConfigError, DataError


@dataclass
class EvalSplit:
    """One split, subset taken, transform not yet attached.

    Attributes:
        base: Data set of ``(uint8 [C, H, W], label)`` (``Unreadable(path)`` for an unreadable file).
        labels: int64 labels ``[N]`` of ``base``.
        name: ``"train"``, ``"test"`` or ``"val"``.
    """

    base: Dataset
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> SeededTransformDataset:
        """The split as a data set of ``(float [C, H', W'], label)``."""
        return SeededTransformDataset(self.base, transform)


@dataclass
class EvalData:
    """A labelled train / test pair and how to feed it to an encoder.

    Attributes:
        train: Memory bank (k-NN) or training split (probe, fine-tuning).
        test: The split accuracies are reported on.
        num_classes: Number of classes.
        classes: Class names, indexed by label.
        channels: Image channels (the encoder's ``in_chans``).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        img_size: Side of the square images fed to the encoder.
        name: ``"fashion_mnist"`` or ``"folder"``.
        fit: ``"resize"`` or ``"pad"`` (how smaller images reach ``img_size``; as in pre-training).
        labels: The few-label selection (``{"count", "asked", "seed", "of"}``), or None: a plain subset.
    """

    train: EvalSplit
    test: EvalSplit
    num_classes: int
    classes: tuple[str, ...]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int
    name: str
    fit: str = "resize"
    labels: dict[str, object] | None = None

    def transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The deterministic evaluation transform (uint8 ``[C, H, W]`` -> normalised float)."""
        return build_eval_transform(self.img_size, self.mean, self.std, self.fit)

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary for result files."""
        return {
            "dataset": self.name,
            "num_train": len(self.train),
            "num_test": len(self.test),
            "test_split": self.test.name,
            "num_classes": self.num_classes,
            "img_size": self.img_size,
            "fit": self.fit,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
        } | ({"labels": dict(self.labels)} if self.labels is not None else {})


def normalisation(cfg: DataConfig, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std the encoder was trained with: ``data.mean/std`` or the data set's defaults.

    Raises:
        DataError: The configured statistics do not have one entry per channel.
    """
    if cfg.dataset == "fashion_mnist":
        default: tuple[Sequence[float], Sequence[float]] = (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    else:
        default = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    out = []
    for given, fallback, key in ((cfg.mean, default[0], "mean"), (cfg.std, default[1], "std")):
        values = tuple(float(v) for v in (fallback if given is None else given))
        if len(values) != channels:
            raise DataError(
                f"data.{key} has {len(values)} entries but the encoder takes {channels} channel(s); "
                f"give one value per channel, e.g. data.{key}=[{', '.join(['0.5'] * channels)}]"
            )
        out.append(values)
    return out[0], out[1]


def _take(split: EvalSplit, n: int | None, seed: int) -> EvalSplit:
    """A seeded, class-balanced subset of ``n`` images of ``split`` (None, or ``n`` at least its size: all)."""
    if n is not None and n < 1:
        raise DataError(f"a subset needs at least one image, got {n} for the {split.name} split")
    if n is None or n >= len(split.labels):
        return split
    indices = balanced_subset(split.labels, n, seed)
    return EvalSplit(Subset(split.base, indices.tolist()), split.labels[indices], split.name)


def _hold_out(train: EvalSplit, n: int, seed: int) -> tuple[EvalSplit, EvalSplit]:
    """Split ``train`` into (rest, held-out ``n`` class-balanced images); seed + 1 so the holdout
    is not the same draw as the subset."""
    if n >= len(train):
        raise DataError(
            f"val_holdout={n} leaves no training image: the train split has {len(train)}; "
            "hold out fewer images or use a larger train_subset"
        )
    held = balanced_subset(train.labels, n, seed + 1)
    rest = np.setdiff1d(np.arange(len(train)), held)
    return (
        EvalSplit(Subset(train.base, rest.tolist()), train.labels[rest], train.name),
        EvalSplit(Subset(train.base, held.tolist()), train.labels[held], "holdout"),
    )


def _take_labelled(
    split: EvalSplit, asked: LabelCount, seed: int, val_holdout: int
) -> tuple[EvalSplit, EvalSplit | None, dict[str, object]]:
    """The labelled images of the whole train split (and, with ``val_holdout``, a disjoint holdout)."""
    full, labels = split.base, split.labels
    n = asked.resolve(len(labels))
    chosen = labelled_subset(labels, n, seed)
    train = EvalSplit(Subset(full, chosen.tolist()), labels[chosen], split.name)
    held = None
    if val_holdout > 0:
        idx = label_holdout(labels, n, val_holdout, seed)
        held = EvalSplit(Subset(full, idx.tolist()), labels[idx], "holdout")
    return train, held, {"count": n, "asked": str(asked), "seed": seed, "of": len(labels)}


def _check_labels(split: EvalSplit, where: str) -> None:
    present = np.unique(split.labels)
    if len(present) < 2:
        raise DataError(
            f"{where} holds a single class; evaluation needs labelled images of at least two "
            "classes, one sub-folder per class (ROOT/train/<class>/..., ROOT/val/<class>/...)"
        )


def _asked_labels(labels: LabelCount | int | str | None, train_subset: int | None) -> LabelCount | None:
    """The few-label count, refused together with a train subset (they exclude each other)."""
    asked = None if labels is None else parse_labels(labels)
    if asked is not None and train_subset is not None:
        raise ConfigError(
            f"labels={asked} chooses the labelled images from the whole train split; "
            f"it excludes a train subset (got train_subset={train_subset})"
        )
    return asked


def _load_fashion_mnist(cfg: DataConfig, channels: int) -> tuple[EvalSplit, EvalSplit, tuple[str, ...]]:
    """Fashion-MNIST's whole train and test splits, and its class names."""
    if channels != 1:
        raise DataError(
            f"Fashion-MNIST is greyscale but the encoder takes {channels} channels; "
            "evaluate it on its own data with data.data_dir=DIR (--data-dir)"
        )
    splits = []
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(cfg.root, split)  # uint8 [N, 28, 28], int64 [N]
        full = ArrayImageDataset(images, labels, len(FASHION_MNIST_CLASSES))
        splits.append(EvalSplit(full, labels, split))
    return splits[0], splits[1], FASHION_MNIST_CLASSES


def _load_folder(cfg: DataConfig, channels: int) -> tuple[EvalSplit, EvalSplit, tuple[str, ...]]:
    """An image folder's (or pack's) whole ``train`` and ``val`` splits, and their class names."""
    if cfg.data_dir is None:
        raise DataError("folder data needs data.data_dir=DIR (--data-dir) with DIR/train/ and DIR/val/")
    folders = []
    for split in ("train", "val"):
        try:
            folder = open_image_dataset(cfg.data_dir, split, channels=channels)
        except DataError as exc:
            raise DataError(
                f"evaluation needs labelled images in {cfg.data_dir}/train/<class>/ and "
                f"{cfg.data_dir}/val/<class>/: {exc}"
            ) from None
        if not folder.classes:  # an unlabelled layout (a pack always has classes)
            raise DataError(no_labels_message(cfg.data_dir))
        check_readable(folder)
        folders.append(folder)
    train, val = folders
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataError(
            f"the class folders of {cfg.data_dir}/train and {cfg.data_dir}/val differ "
            f"(only in train: {only_train[:5]}, only in val: {only_val[:5]}); "
            "both splits need the same class sub-folders"
        )
    return EvalSplit(train, train.labels, "train"), EvalSplit(val, val.labels, "val"), tuple(train.classes)


def _choose_train(
    full: EvalSplit, asked: LabelCount | None, train_subset: int | None, seed: int, val_holdout: int
) -> tuple[EvalSplit, EvalSplit | None, dict[str, object] | None]:
    """(train split, held-out split or None, the few-label selection or None) of the whole train split."""
    if asked is not None:
        return _take_labelled(full, asked, seed, val_holdout)
    train = _take(full, train_subset, seed)
    held = None
    if val_holdout > 0:
        train, held = _hold_out(train, val_holdout, seed)
    return train, held, None


def build_eval_data(
    cfg: DataConfig,
    img_size: int,
    channels: int,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    val_holdout: int = 0,
    labels: LabelCount | int | str | None = None,
) -> EvalData:
    """Load the labelled train and test splits described by a data config.

    Args:
        cfg: The ``data`` section (of the checkpoint's config, possibly with another data set).
        img_size: Side of the images the encoder takes.
        channels: The encoder's input channels; folder images are converted to it.
        train_subset: Size of a seeded, class-balanced subset of the train split; a split
            with fewer images is used whole (None: always whole).
        test_subset: The same for the test split.
        seed: Chooses the subsets.
        val_holdout: If > 0, a seeded, class-balanced set of this many images is held out of
            the (subset) train split and returned as ``test`` (named ``"holdout"``) in place of
            the test split, which is then not read: a validation split for tuning a recipe.
            With ``labels``: held out of the whole train split, disjoint from the labelled images.
        labels: The few-label protocol: only this many images (a count, or ``"P%"`` of the train
            split) keep their label, chosen class-balanced, seeded by ``seed`` and nested (see
            :func:`~hpm.data.labels.labelled_subset`); they are the train split. Excludes
            ``train_subset``.

    Raises:
        ConfigError: Both ``labels`` and ``train_subset``, or ``labels`` that are no count or share.
        DataError: Missing or unreadable data, no labels (an unlabelled layout, no class folders
            or a single class), a missing ``val/`` split, a holdout that leaves no training image, or more
            labels than images or fewer than classes.
    """
    asked = _asked_labels(labels, train_subset)
    load = _load_fashion_mnist if cfg.dataset == "fashion_mnist" else _load_folder
    full_train, full_test, classes = load(cfg, channels)
    where = cfg.data_dir if cfg.dataset == "folder" else cfg.root
    _check_labels(full_train, f"the train split of {where}")
    train, held, chosen = _choose_train(full_train, asked, train_subset, seed, val_holdout)
    test = held if held is not None else _take(full_test, test_subset, seed)
    mean, std = normalisation(cfg, channels)
    return EvalData(train, test, len(classes), classes, channels, mean, std, img_size, cfg.dataset, cfg.fit, chosen)
