"""Image folders: discovery, labels, channel conversion, unreadable files and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.data.folder import ImageFolderDataset, Unreadable, check_readable, read_image
from hpm.errors import DataError

from .conftest import WriteImage


def _names(dataset: ImageFolderDataset) -> list[str]:
    return [Path(path).name for path, _ in dataset.samples]


def test_discovery_and_labels(image_tree: Path) -> None:
    dataset = ImageFolderDataset(image_tree, "train")
    assert dataset.classes == ["cat", "dog"] and dataset.num_classes == 2
    assert sorted(_names(dataset)) == ["a.png", "b.JPG", "c.jpeg", "d.png", "e.jpg"]
    by_name = {Path(path).name: label for path, label in dataset.samples}
    assert by_name == {"a.png": 0, "b.JPG": 0, "c.jpeg": 0, "d.png": 1, "e.jpg": 1}
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [label for _, label in dataset.samples]
    assert len(dataset) == 5


def test_rgb_conversion_and_sizes(image_tree: Path) -> None:
    dataset = ImageFolderDataset(image_tree, "train", channels=3)
    assert dataset.channels == 3
    shapes = {}
    for index, (path, label) in enumerate(dataset.samples):
        image, got_label = dataset[index]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert got_label == label
        shapes[Path(path).name] = tuple(image.shape[1:])
    assert shapes == {
        "a.png": (16, 24),
        "b.JPG": (19, 31),
        "c.jpeg": (40, 40),
        "d.png": (29, 17),
        "e.jpg": (20, 20),
    }
    grey, _ = dataset[_names(dataset).index("d.png")]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    original = np.asarray(Image.open(image_tree / "train" / "cat" / "a.png"))
    rgb, _ = dataset[_names(dataset).index("a.png")]
    np.testing.assert_array_equal(rgb.permute(1, 2, 0).numpy(), original)


def test_greyscale_conversion(image_tree: Path) -> None:
    dataset = ImageFolderDataset(image_tree, "train", channels=1)
    for index in range(len(dataset)):
        image, _ = dataset[index]
        assert image.shape[0] == 1 and image.dtype == torch.uint8
    expected = np.asarray(Image.open(image_tree / "train" / "cat" / "a.png").convert("L"))
    image, _ = dataset[_names(dataset).index("a.png")]
    np.testing.assert_array_equal(image[0].numpy(), expected)


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    array = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    image = read_image(path, channels=1)
    assert image.tolist() == [[[0, 100, 255]]]


def test_corrupt_and_truncated_files_are_named(image_tree: Path, write_image: WriteImage) -> None:
    dog = image_tree / "train" / "dog"
    (dog / "random.png").write_bytes(np.random.default_rng(0).bytes(300))
    good = write_image(dog / "whole.png", (32, 32), "RGB", seed=9).read_bytes()
    (dog / "cut.png").write_bytes(good[: len(good) // 2])
    (dog / "empty.jpg").write_bytes(b"")
    dataset = ImageFolderDataset(image_tree, "train")
    names = _names(dataset)
    for bad in ("random.png", "cut.png", "empty.jpg"):
        item = dataset[names.index(bad)]
        assert item == Unreadable(str(dog / bad))
        assert Path(item.path).is_file()  # the path names the real file on disk
    image, label = dataset[names.index("whole.png")]
    assert image.shape == (3, 32, 32) and label == 1
    check_readable(dataset)  # some files are readable: no error


def test_file_deleted_after_scan_is_named(image_tree: Path) -> None:
    dataset = ImageFolderDataset(image_tree, "train")
    gone = dataset.samples[0][0]
    Path(gone).unlink()
    assert dataset[0] == Unreadable(gone)


def test_unreadable_is_not_a_sample() -> None:
    """Code that forgets the check fails loudly, as it did with None, instead of using the path."""
    item = Unreadable("x.png")
    with pytest.raises(TypeError):
        image, label = item  # noqa: F841
    with pytest.raises(TypeError):
        item[0]  # type: ignore[index]


def test_all_files_corrupt(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for i in range(3):
            path = tmp_path / "val" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    dataset = ImageFolderDataset(tmp_path, "val")
    with pytest.raises(DataError, match="none of the 6 files checked could be read, e.g. .*0.png"):
        check_readable(dataset)
    with pytest.raises(DataError, match="none of the 2 files checked"):
        check_readable(dataset, max_files=2)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*layout"):
        ImageFolderDataset(tmp_path / "absent", "train")


def test_missing_split(image_tree: Path) -> None:
    with pytest.raises(DataError, match=r"val does not exist.*\['train'\].*<class_name>"):
        ImageFolderDataset(image_tree, "val")


def test_no_class_folders(tmp_path: Path, write_image: WriteImage) -> None:
    write_image(tmp_path / "train" / "loose.png")
    with pytest.raises(DataError, match="no class folders"):
        ImageFolderDataset(tmp_path, "train")


def test_no_image_files(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        ImageFolderDataset(tmp_path, "train")


def test_bad_channels(image_tree: Path) -> None:
    with pytest.raises(DataError, match="channels"):
        ImageFolderDataset(image_tree, "train", channels=2)
