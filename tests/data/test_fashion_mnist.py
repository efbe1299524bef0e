"""Fashion-MNIST loading from IDX files, and the in-memory array data set."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ArrayImageDataset,
    load_fashion_mnist,
)
from hpm.errors import DataError

from .conftest import needs_fashion_mnist


def _write_idx(path: Path, magic: int, array: np.ndarray, gz: bool = True) -> None:
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def _write_split(root: Path, images: np.ndarray, labels: np.ndarray, split: str = "train") -> None:
    prefix = "train" if split == "train" else "t10k"
    _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051, images)
    _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)


def test_real_train_split(fashion_train: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = fashion_train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert set(np.unique(labels).tolist()) == set(range(10))
    assert np.bincount(labels).tolist() == [6000] * 10
    assert abs(images.mean() / 255 - FASHION_MNIST_MEAN[0]) < 1e-3
    assert abs(images.std() / 255 - FASHION_MNIST_STD[0]) < 1e-3


@needs_fashion_mnist
def test_real_test_split() -> None:
    images, labels = load_fashion_mnist(FASHION_MNIST_ROOT, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and len(np.unique(labels)) == 10


def test_constants() -> None:
    assert len(FASHION_MNIST_CLASSES) == 10
    assert len(FASHION_MNIST_MEAN) == len(FASHION_MNIST_STD) == 1


def test_synthetic_idx_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1])
    _write_split(tmp_path, images, labels, split="test")
    got_images, got_labels = load_fashion_mnist(tmp_path, "test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.int64 and got_images.flags.writeable


def test_missing_root_names_package_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_fashion_mnist(missing, "train")
    message = str(info.value)
    assert str(missing / "train-images-idx3-ubyte.gz") in message
    assert "dataset-fashion-mnist" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "data.root=DIR" in message


def test_missing_labels_file(tmp_path: Path) -> None:
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_fashion_mnist(tmp_path, "train")


@pytest.mark.parametrize("defect", ["magic", "truncated", "not_gzip", "empty", "count_mismatch"])
def test_corrupt_files(tmp_path: Path, defect: str) -> None:
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    labels = np.arange(4)
    _write_split(tmp_path, images, labels)
    image_file = tmp_path / "train-images-idx3-ubyte.gz"
    if defect == "magic":
        _write_idx(image_file, 2049, images)
    elif defect == "truncated":
        raw = gzip.decompress(image_file.read_bytes())
        image_file.write_bytes(gzip.compress(raw[:-100]))
    elif defect == "not_gzip":
        image_file.write_bytes(np.random.default_rng(0).bytes(500))
    elif defect == "empty":
        image_file.write_bytes(gzip.compress(b"\x00\x00"))
    elif defect == "count_mismatch":
        _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, np.arange(3))
    with pytest.raises(DataError, match="idx"):
        load_fashion_mnist(tmp_path, "train")


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split"):
        load_fashion_mnist(tmp_path, "val")  # type: ignore[arg-type]


def test_array_dataset_greyscale() -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    dataset = ArrayImageDataset(images, np.array([2, 0, 1]), num_classes=10)
    image, label = dataset[1]
    assert image.shape == (1, 4, 5) and image.dtype == torch.uint8
    assert torch.equal(image[0], torch.from_numpy(images[1]))
    assert label == 0 and isinstance(label, int)
    assert len(dataset) == 3 and dataset.channels == 1 and dataset.num_classes == 10
    assert dataset.labels.dtype == np.int64


def test_array_dataset_colour() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    dataset = ArrayImageDataset(images, np.array([0, 3]))
    image, label = dataset[np.int64(1)]  # numpy indices work too
    assert image.shape == (3, 4, 5) and image.is_contiguous()
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(images[1]))
    assert label == 3 and dataset.channels == 3 and dataset.num_classes == 4


def test_array_dataset_rejects_bad_input() -> None:
    with pytest.raises(DataError):
        ArrayImageDataset(np.zeros((2, 4, 4), dtype=np.float32), np.zeros(2))
    with pytest.raises(DataError):
        ArrayImageDataset(np.zeros((2, 4, 4), dtype=np.uint8), np.zeros(3))
