"""Which images a panel figure shows: data-set images by index (spread over the classes) or files."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, islice, zip_longest
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hpm.config import DataConfig
from hpm.data import FASHION_MNIST_CLASSES, Unreadable, load_fashion_mnist, open_image_dataset, read_image
from hpm.errors import DataError

DEFAULT_IMAGES = 8  # images shown when none are chosen, spread over the classes (default_indices)


def default_indices(labels: Sequence[int] | np.ndarray, count: int = DEFAULT_IMAGES) -> list[int]:
    """Indices of ``count`` images taken round-robin over the classes, in label order.

    The first image of each class (smallest label first), then the second of each, and so on,
    until ``count`` are chosen (all of them if there are fewer): e.g. one image of each of 8
    classes of Fashion-MNIST, rather than the first 8 images of a folder sorted by class.

    Args:
        labels: The class label of each image of the split, ``[N]``.
        count: How many images to choose.

    Returns:
        Indices into ``labels``, in the round-robin order.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")  # by label, each class's images in index order
    starts = np.flatnonzero(np.diff(labels[order])) + 1
    by_class = np.split(order, starts) if len(order) else []
    rounds = chain.from_iterable(zip_longest(*by_class))  # class 0's first, class 1's first, ...
    return list(islice((int(i) for i in rounds if i is not None), max(count, 0)))


def _check_indices(indices: Sequence[int] | None, labels: np.ndarray, split: str) -> list[int]:
    """``indices`` if all are in range, or :func:`default_indices` of ``labels`` when None."""
    size = len(labels)
    if indices is None:
        return default_indices(labels)
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise DataError(f"image indices {bad} are out of range: the {split} split has {size} images (0..{size - 1})")
    return list(indices)


def _fashion_mnist_images(data_cfg: DataConfig, split: str, indices: Sequence[int] | None) -> tuple[list[Tensor], list[str]]:
    """uint8 [1, 28, 28] Fashion-MNIST images of ``split`` and their row labels."""
    if split not in ("train", "test"):
        raise DataError(f"Fashion-MNIST has the splits 'train' and 'test', not {split!r}")
    images, labels = load_fashion_mnist(data_cfg.root, split)  # uint8 [N, 28, 28], int64 [N]
    indices = _check_indices(indices, labels, split)
    return (
        [torch.from_numpy(images[i]).unsqueeze(0) for i in indices],
        [f"{split} #{i}\n{FASHION_MNIST_CLASSES[labels[i]]}" for i in indices],
    )


def split_images(
    data_cfg: DataConfig, split: str | None, indices: Sequence[int] | None, channels: int
) -> tuple[list[Tensor], list[str]]:
    """uint8 [C, H, W] images of a data-set split and their row labels.

    ``split`` None: the test split (``val/`` for image folders), else the train split.
    ``indices`` None: :data:`DEFAULT_IMAGES` images spread over the classes (see
    :func:`default_indices`; fewer if the split is smaller).
    """
    wanted = split or "test"
    if data_cfg.dataset == "fashion_mnist":
        return _fashion_mnist_images(data_cfg, wanted, indices)
    if data_cfg.data_dir is None:
        raise DataError("folder data needs data.data_dir; pass --data-dir DIR or image files with --images")
    folder_split = "val" if wanted == "test" else wanted
    try:
        folder = open_image_dataset(data_cfg.data_dir, folder_split, channels)
    except DataError:
        if split is not None:
            raise
        folder_split = "train"  # no val/: show training images
        folder = open_image_dataset(data_cfg.data_dir, folder_split, channels)
    indices = _check_indices(indices, folder.labels, folder_split)
    out, names = [], []
    for i in indices:
        item = folder[i]
        if isinstance(item, Unreadable):
            raise DataError(
                f"image {i} of {data_cfg.data_dir}/{folder_split} ({item.path}) is unreadable; "
                "choose other images with --indices or replace the file"
            )
        out.append(item[0])
        label = folder.classes[item[1]] if folder.classes else "unlabelled"
        names.append(f"{folder_split} #{i}\n{label}")
    return out, names


def file_images(files: Sequence[str | Path], channels: int) -> tuple[list[Tensor], list[str]]:
    """uint8 [C, H, W] images read from ``files`` and their names as row labels."""
    out, names = [], []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise DataError(f"image file {path} does not exist")
        try:
            out.append(read_image(path, channels))
        except Exception as exc:  # noqa: BLE001 - whatever PIL raises: the same user error
            raise DataError(f"cannot read image file {path}: {exc}") from None
        names.append(path.name)
    return out, names


def choose_images(
    data_cfg: DataConfig,
    split: str | None,
    indices: Sequence[int] | None,
    files: Sequence[str | Path] | None,
    channels: int,
) -> tuple[list[Tensor], list[str]]:
    """The data set's images at ``indices`` (default unless ``files`` are given: spread over the
    classes), then the image files, with their row labels.

    Raises:
        DataError: No image chosen, or one that cannot be read.
    """
    images: list[Tensor] = []
    labels: list[str] = []
    if indices or (indices is None and not files):
        images, labels = split_images(data_cfg, split, indices, channels)
    if files:
        more, names = file_images(files, channels)
        images, labels = images + more, labels + names
    if not images:
        raise DataError("no images chosen; give data-set indices (--indices) or image files (--images)")
    return images, labels
