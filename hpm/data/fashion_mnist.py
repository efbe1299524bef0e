"""Fashion-MNIST read from the gzipped IDX files of the Debian package ``dataset-fashion-mnist``."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hpm.errors import DataError

FASHION_MNIST_MEAN: tuple[float, ...] = (0.2860,)
FASHION_MNIST_STD: tuple[float, ...] = (0.3530,)
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGES_MAGIC = 2051  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049  # unsigned byte, 1 dimension


def _missing_message(path: Path) -> str:
    return (
        f"Fashion-MNIST file {path} does not exist. It comes with the Debian package "
        "'dataset-fashion-mnist': install it with `sudo apt-get install dataset-fashion-mnist` "
        "(or `apt-get install dataset-fashion-mnist` as root), or point data.root=DIR at a "
        "directory holding the four *-ubyte.gz files."
    )


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes.

    Args:
        path: The ``.gz`` file.
        magic: The expected magic number (2051 for images, 2049 for labels).
        ndim: The number of dimensions the magic number announces.

    Returns:
        A writable uint8 array of the shape stored in the header.

    Raises:
        DataError: The file is not a gzip stream or not a well-formed IDX file.
    """
    bad = f"{path} is not a valid Fashion-MNIST IDX file"
    fix = "; reinstall the package dataset-fashion-mnist or point data.root=DIR at good copies"
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{bad} (cannot decompress it: {exc}){fix}") from None
    header_len = 4 * (1 + ndim)
    if len(raw) < header_len:
        raise DataError(f"{bad} (only {len(raw)} bytes, shorter than its header){fix}")
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(f"{bad} (magic number {int(header[0])}, expected {magic}){fix}")
    shape = tuple(int(d) for d in header[1:])
    expected = header_len + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{bad} (header announces shape {shape}, i.e. {expected} bytes, "
            f"but the file holds {len(raw)} bytes){fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def load_fashion_mnist(
    root: str | Path, split: Literal["train", "test"]
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST.

    Args:
        root: Directory holding the four gzipped IDX files.
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).

    Returns:
        ``(images, labels)``: uint8 ``[N, 28, 28]`` and int64 ``[N]`` with values in 0..9.

    Raises:
        DataError: A file is missing, corrupt, or images and labels disagree.
    """
    if split not in _FILES:
        raise DataError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    root = Path(root)
    image_file, label_file = (root / name for name in _FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise DataError(_missing_message(path))
    images = _read_idx(image_file, _IMAGES_MAGIC, ndim=3)  # [N, 28, 28] uint8
    labels = _read_idx(label_file, _LABELS_MAGIC, ndim=1).astype(np.int64)  # [N] int64
    if len(images) != len(labels):
        raise DataError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} "
            "labels; reinstall the package dataset-fashion-mnist"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{label_file} is not a valid Fashion-MNIST IDX file (label {int(labels.max())} "
            f"out of range 0..{len(FASHION_MNIST_CLASSES) - 1})"
        )
    return images, labels


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array, with integer labels.

    Args:
        images: uint8 ``[N, H, W]`` (greyscale) or ``[N, H, W, C]``.
        labels: Integer class labels ``[N]``.
        num_classes: Number of classes; defaults to ``max(labels) + 1``.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(
                f"images must be uint8 [N, H, W] or [N, H, W, C], got {images.dtype} "
                f"of shape {images.shape}"
            )
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(images),):
            raise DataError(f"expected {len(images)} labels, got shape {labels.shape}")
        self.images = images
        self.labels = labels
        self.channels = 1 if images.ndim == 3 else int(images.shape[3])
        inferred = int(labels.max()) + 1 if labels.size else 0
        self.num_classes = inferred if num_classes is None else int(num_classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image, label)``: a uint8 tensor ``[C, H, W]`` and an int."""
        array = self.images[index]
        image = torch.from_numpy(array)
        if array.ndim == 2:
            image = image.unsqueeze(0)  # [1, H, W] uint8
        else:
            image = image.permute(2, 0, 1).contiguous()  # [C, H, W] uint8
        return image, int(self.labels[index])
