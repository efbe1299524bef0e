"""Data in ADE20K's layout: ADE20K's label reduction, the labelled images, the training crops, and
bad input refused in one line with exit 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.cli import main
from hpm.eval.segment import SegmentConfig, load_segment_data
from hpm.eval.segment.data import SegmentationDataset, reduce_zero_label
from tests.eval.segment.conftest import write_ade

STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_reduce_zero_label_ignores_0_and_shifts_the_others() -> None:
    label = np.array([[0, 1, 2], [150, 255, 3]], dtype=np.uint8)
    assert reduce_zero_label(label).tolist() == [[255, 0, 1], [149, 255, 2]]


def test_labels_choose_a_seeded_subset_of_the_training_images(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", num_train=8, num_val=2)
    cfg = SegmentConfig(num_classes=4)
    a = load_segment_data(root, cfg, 3, *STATS, labels=3, seed=1)
    assert [p[0].name for p in a.train] == [p[0].name for p in load_segment_data(root, cfg, 3, *STATS, 3, 1).train]
    assert len(a.train) == 3 and a.num_train_all == 8 and len(a.val) == 2
    assert a.train != load_segment_data(root, cfg, 3, *STATS, labels=3, seed=2).train
    assert a.describe()["labels"] == 3


def test_training_crops_keep_image_and_labels_aligned(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", num_train=2, num_val=1, size=32)
    cfg = SegmentConfig(num_classes=4, crop_size=16, scale_range=(1.0, 1.0))
    data = load_segment_data(root, cfg, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    torch.manual_seed(0)
    image, label = SegmentationDataset(data.train, cfg, data, train=True)[0]
    assert image.shape == (3, 16, 16) and label.shape == (16, 16) and label.dtype == torch.int64
    cls = int(label.max())
    square = image[cls - 1]  # the square's colour channel, halved with the image (crop frame 16 x 64)
    assert cls in (1, 2, 3) and square[label == cls].mean() > 0.85 and square[label == 0].mean() < 0.4
    grey = load_segment_data(root, cfg, 1, (0.0,), (1.0,))
    image, label = SegmentationDataset(grey.val, cfg, grey, train=False)[0]
    assert image.shape == (1, 16, 16) and label.shape == (32, 32)  # resized to the crop; labels at full size


def _refused(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    out = tmp_path / "out" / "seg.json"
    code = main(["eval", "segment", "--random-init", "--data-dir", str(root), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not (tmp_path / "out").exists()  # nothing written
    return err[0]


def test_an_image_without_annotation_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_ade(tmp_path / "ade")
    missing = root / "annotations" / "validation" / "000001.png"
    missing.unlink()
    line = _refused(root, tmp_path, capsys)
    assert f"image {root / 'images' / 'validation' / '000001.png'} has no annotation: {missing} is missing" in line


def test_sizes_that_differ_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_ade(tmp_path / "ade")
    ann = root / "annotations" / "training" / "000002.png"
    Image.new("L", (32, 30)).save(ann)
    line = _refused(root, tmp_path, capsys)
    assert f"image {root / 'images' / 'training' / '000002.png'} is 32x32 but its annotation {ann} is 32x30" in line


def test_a_label_above_the_class_count_names_the_file_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_ade(tmp_path / "ade")
    ann = root / "annotations" / "validation" / "000000.png"
    label = np.zeros((32, 32), dtype=np.uint8)
    label[0, 0], label[1, 1] = 255, 7  # 255 is the ignore value: allowed
    Image.fromarray(label, mode="L").save(ann)
    line = _refused(root, tmp_path, capsys, "num_classes=4")
    assert f"annotation {ann} has label 7, not below the class count 4 nor the ignore value 255" in line
    line = _refused(root, tmp_path, capsys, "num_classes=4", "--reduce-zero-label")
    assert f"annotation {ann} has label 6 after --reduce-zero-label" in line


def test_a_colour_annotation_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_ade(tmp_path / "ade")
    ann = root / "annotations" / "training" / "000003.png"
    Image.new("RGB", (32, 32), (3, 0, 0)).save(ann)
    line = _refused(root, tmp_path, capsys)
    assert f"annotation {ann} is a colour (RGB) image; annotations must be index PNGs" in line


def test_a_folder_not_in_ade20k_layout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert "no images in" in _refused(tmp_path / "empty", tmp_path, capsys)
