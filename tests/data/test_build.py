"""Building the pre-training data from a DataConfig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from hpm.config import DataConfig
from hpm.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainData,
    SeededTransformDataset,
    build_pretrain_data,
)
from hpm.errors import DataError

from .conftest import needs_fashion_mnist


@needs_fashion_mnist
def test_fashion_mnist_subset() -> None:
    data = build_pretrain_data(DataConfig(subset=100), img_size=32, seed=0)
    assert isinstance(data, PretrainData) and isinstance(data.dataset, SeededTransformDataset)
    assert data.name == "fashion_mnist" and data.channels == 1 and data.num_classes == 10
    assert data.num_images == len(data.dataset) == len(data.base) == 100
    assert isinstance(data.base, Subset) and data.dataset.base is data.base
    assert np.bincount(data.labels).tolist() == [10] * 10
    assert data.mean == FASHION_MNIST_MEAN and data.std == FASHION_MNIST_STD
    assert len(data.classes) == 10
    image, label = data.dataset[(5, 42)]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label == data.labels[5]
    again = build_pretrain_data(DataConfig(subset=100), img_size=32, seed=0)
    assert np.array_equal(again.base.indices, data.base.indices)  # type: ignore[attr-defined]
    assert torch.equal(again.dataset[(5, 42)][0], image)


@needs_fashion_mnist
def test_fashion_mnist_takes_the_given_statistics() -> None:
    data = build_pretrain_data(DataConfig(mean=[0.5], std=[0.2]), 28, seed=0)
    assert data.num_images == 60000 and data.mean == (0.5,) and data.std == (0.2,)


def test_fashion_mnist_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build_pretrain_data(DataConfig(root=str(tmp_path)), 32, seed=0)


def test_fashion_mnist_rejects_three_channels() -> None:
    with pytest.raises(DataError, match="greyscale"):
        build_pretrain_data(DataConfig(channels=3), 32, seed=0)


def test_folder_defaults(image_tree: Path) -> None:
    cfg = DataConfig(data_dir=str(image_tree))
    data = build_pretrain_data(cfg, img_size=16, seed=0)
    assert data.name == "folder" and data.channels == 3 and data.num_classes == 2
    assert data.num_images == 5 and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.mean == IMAGENET_MEAN and data.std == IMAGENET_STD
    assert data.classes == ("cat", "dog") and data.base is data.dataset.base
    image, _ = data.dataset[(4, 1)]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32


def test_folder_greyscale_subset(image_tree: Path) -> None:
    cfg = DataConfig(data_dir=str(image_tree), channels=1, subset=2)
    data = build_pretrain_data(cfg, img_size=8, seed=1)
    assert data.channels == 1 and data.mean == (0.5,) and data.std == (0.5,)
    assert data.num_images == 2 and sorted(data.labels.tolist()) == [0, 1]
    assert data.dataset[(0, 3)][0].shape == (1, 8, 8)


def test_folder_all_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "train" / "x" / "a.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="none of the 1 files checked"):
        build_pretrain_data(DataConfig(data_dir=str(tmp_path)), 16, seed=0)


def test_folder_needs_data_dir() -> None:
    with pytest.raises(DataError, match="data_dir"):
        build_pretrain_data(DataConfig(dataset="folder"), 16, seed=0)


def test_stats_must_match_channels(image_tree: Path) -> None:
    with pytest.raises(DataError, match="data.mean has 1 entries.*3 channel"):
        build_pretrain_data(DataConfig(data_dir=str(image_tree), mean=[0.5]), 16, seed=0)
    with pytest.raises(DataError, match="data.std has 3 entries.*1 channel"):
        cfg = DataConfig(data_dir=str(image_tree), channels=1, std=[0.2, 0.2, 0.2])
        build_pretrain_data(cfg, 16, seed=0)
    with pytest.raises(DataError, match="positive"):
        build_pretrain_data(DataConfig(data_dir=str(image_tree), channels=1, std=[0.0]), 16, seed=0)


def test_subset_larger_than_data(image_tree: Path) -> None:
    with pytest.raises(DataError, match="data.subset=6"):
        build_pretrain_data(DataConfig(data_dir=str(image_tree), subset=6), 16, seed=0)


@needs_fashion_mnist
def test_subset_seed_fixes_the_subset_across_run_seeds() -> None:
    a = build_pretrain_data(DataConfig(subset=100, subset_seed=3), img_size=32, seed=0)
    b = build_pretrain_data(DataConfig(subset=100, subset_seed=3), img_size=32, seed=1)
    c = build_pretrain_data(DataConfig(subset=100), img_size=32, seed=1)
    assert np.array_equal(a.base.indices, b.base.indices)  # type: ignore[attr-defined]
    assert not np.array_equal(a.base.indices, c.base.indices)  # type: ignore[attr-defined]


@needs_fashion_mnist
def test_fit_pad_gives_padded_fashion_mnist() -> None:
    data = build_pretrain_data(DataConfig(subset=10, fit="pad", crop_scale=(1.0, 1.0), hflip=0.0), img_size=32, seed=0)
    image, _ = data.dataset[(0, 0)]
    assert image.shape == (1, 32, 32)
    background = (0 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]
    assert torch.allclose(image[0, 0], torch.full((32,), background), atol=1e-4)  # a padded row
