"""Evaluation data: Fashion-MNIST splits, ImageFolder train/val, subsets and data without labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpm.config import DataConfig
from hpm.errors import DataError
from hpm.eval.data import build_eval_data, normalisation
from tests.conftest import needs_fmnist
from tests.eval.conftest import write_image_folder


def _folder_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(data_dir=str(root), **kw)


def test_image_folder_train_and_val(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 4, "b": 3})
    write_image_folder(root, {"a": 2, "b": 2}, split="val")
    data = build_eval_data(_folder_cfg(root), img_size=16, channels=3)
    assert (len(data.train), len(data.test), data.num_classes, data.classes) == (7, 4, 2, ("a", "b"))
    assert data.mean == (0.485, 0.456, 0.406) and data.test.name == "val"
    image, label = data.train.with_transform(data.transform())[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0


def test_folder_images_follow_the_encoder_channels(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    write_image_folder(root, {"a": 1, "b": 1}, split="val")
    data = build_eval_data(_folder_cfg(root), img_size=8, channels=1)
    assert data.mean == (0.5,)
    assert data.test.with_transform(data.transform())[0][0].shape == (1, 8, 8)


def test_balanced_subsets(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 10, "b": 10, "c": 10})
    write_image_folder(root, {"a": 5, "b": 5, "c": 5}, split="val")
    data = build_eval_data(_folder_cfg(root), 8, 3, train_subset=6, test_subset=3)
    assert sorted(data.train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(data.test.labels.tolist()) == [0, 1, 2]
    whole = build_eval_data(_folder_cfg(root), 8, 3, train_subset=40, test_subset=10000)
    assert (len(whole.train), len(whole.test)) == (30, 15)  # a subset caps the split


def test_images_without_class_folders_have_no_labels(tmp_path: Path) -> None:
    (tmp_path / "d" / "train").mkdir(parents=True)
    write_image_folder(tmp_path / "tmp", {"x": 3})
    for f in (tmp_path / "tmp" / "train" / "x").iterdir():
        f.rename(tmp_path / "d" / "train" / f.name)  # images straight in train/, no classes
    with pytest.raises(DataError, match="needs labelled images.*holds no class folders"):
        build_eval_data(_folder_cfg(tmp_path / "d"), 8, 3)


def test_a_single_class_is_no_labels(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"all": 4})
    write_image_folder(root, {"all": 2}, split="val")
    with pytest.raises(DataError, match="single class.*at least two classes"):
        build_eval_data(_folder_cfg(root), 8, 3)


def test_missing_val_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    with pytest.raises(DataError, match=r"val/<class>/.*split folder .*val does not exist"):
        build_eval_data(_folder_cfg(root), 8, 3)


def test_val_with_other_classes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    write_image_folder(root, {"a": 1, "c": 1}, split="val")
    with pytest.raises(DataError, match=r"only in train: \['b'\], only in val: \['c'\]"):
        build_eval_data(_folder_cfg(root), 8, 3)


def test_statistics_must_match_the_channels() -> None:
    with pytest.raises(DataError, match="data.mean has 1 entries but the encoder takes 3"):
        normalisation(DataConfig(data_dir="x", mean=[0.5], std=[0.5, 0.5, 0.5]), 3)


def test_missing_fashion_mnist_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build_eval_data(DataConfig(root=str(tmp_path)), 32, 1)


def test_fashion_mnist_needs_a_greyscale_encoder() -> None:
    with pytest.raises(DataError, match="greyscale but the encoder takes 3 channels"):
        build_eval_data(DataConfig(), 32, 3)


@needs_fmnist
def test_fashion_mnist_train_and_test() -> None:
    data = build_eval_data(DataConfig(), 32, 1, train_subset=100, test_subset=50)
    assert (len(data.train), len(data.test), data.num_classes) == (100, 50, 10)
    assert data.test.name == "test" and data.mean == (0.286,)
    assert data.train.with_transform(data.transform())[0][0].shape == (1, 32, 32)
    full = build_eval_data(DataConfig(), 32, 1, test_subset=None)
    assert (len(full.train), len(full.test)) == (60000, 10000)


@needs_fmnist
def test_val_holdout_is_carved_from_the_training_subset_never_the_test_split() -> None:
    import numpy as np

    cfg = DataConfig(fit="pad")
    full = build_eval_data(cfg, 32, 1, train_subset=1000, test_subset=200, seed=0)
    tuned = build_eval_data(cfg, 32, 1, train_subset=1000, test_subset=200, seed=0, val_holdout=200)
    assert (len(tuned.train), len(tuned.test), tuned.test.name) == (800, 200, "holdout")
    assert np.bincount(tuned.test.labels).tolist() == [20] * 10  # class-balanced
    subset = set(full.train.base.indices)  # indices into the Fashion-MNIST train split
    rest = {full.train.base.indices[i] for i in tuned.train.base.indices}
    held = {full.train.base.indices[i] for i in tuned.test.base.indices}
    assert rest | held == subset and not rest & held  # a partition of the training subset
    assert tuned.describe()["test_split"] == "holdout"
    with pytest.raises(DataError, match="leaves no training image"):
        build_eval_data(cfg, 32, 1, train_subset=100, val_holdout=100)
