"""COCO data: the labelled images, tiny boxes left out of training, joint transforms, and bad
input refused in one line with exit 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpm.cli import main
from hpm.eval.detect import DetectConfig, coco_paths, load_detect_data
from hpm.eval.detect.data import DetectionDataset
from tests.eval.detect.conftest import copy_scenes, edit_coco

STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _paths(root: Path) -> list[tuple[Path, Path]]:
    return coco_paths(root, (None, None), (None, None))


def test_the_layout_and_the_seeded_labelled_images(scenes: Path) -> None:
    (train_json, train_images), (val_json, _) = _paths(scenes)
    assert train_json == scenes / "annotations" / "instances_training.json"
    assert train_images == scenes / "images" / "training"
    a = load_detect_data(_paths(scenes), 3, *STATS, labels=5, seed=1)
    again = load_detect_data(_paths(scenes), 3, *STATS, 5, 1)
    assert [im["id"] for im in a.train.images] == [im["id"] for im in again.train.images]
    assert len(a.train.images) == 5 and a.num_train_all == 16 and len(a.val.images) == 8
    assert a.train.images != load_detect_data(_paths(scenes), 3, *STATS, labels=5, seed=2).train.images
    assert a.cat_ids == list(range(1, 11)) and a.describe()["labels"] == 5


def test_boxes_under_min_box_size_are_left_out_of_training(scenes: Path) -> None:
    data = load_detect_data(_paths(scenes), 3, *STATS)
    limit = 10  # these scenes' smallest box side is 9 px (larger sets also hold 1 px instances)
    small = [i for i, im in enumerate(data.train.images)
             if any(min(a["bbox"][2:]) < limit for a in data.train.anns[im["id"]])]
    index = small[0]
    anns = data.train.anns[data.train.images[index]["id"]]
    kept = DetectionDataset(data.train, data, DetectConfig(min_box_size=limit, hflip=0.0), train=True)[index][1]
    every = DetectionDataset(data.train, data, DetectConfig(min_box_size=0, hflip=0.0), train=True)[index][1]
    assert len(kept["boxes"]) == sum(min(a["bbox"][2:]) >= limit for a in anns) < len(every["boxes"]) == len(anns)


def test_a_training_item_keeps_boxes_masks_and_labels_together(scenes: Path) -> None:
    data = load_detect_data(_paths(scenes), 1, (0.5,), (0.25,))
    torch.manual_seed(0)
    image, target = DetectionDataset(data.train, data, DetectConfig(hflip=1.0), train=True)[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    boxes, masks, labels = target["boxes"], target["masks"], target["labels"]  # [K, 4], [K, 64, 64], [K]
    assert masks.shape == (len(boxes), 64, 64) and labels.shape == (len(boxes),) and labels.min() >= 1
    for box, mask in zip(boxes, masks, strict=True):  # the flipped box still bounds its flipped mask
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    val_image, image_id = DetectionDataset(data.val, data, DetectConfig(), train=False)[0]
    assert val_image.shape == (1, 64, 64) and image_id == data.val.images[0]["id"]


def _refused(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "out" / "det.json"
    code = main(["eval", "detect", "--random-init", "--data-dir", str(root), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not (tmp_path / "out").exists()  # nothing written
    return err[0]


@pytest.fixture
def damaged(scenes: Path, tmp_path: Path) -> Path:
    return copy_scenes(scenes, tmp_path / "scenes")


def test_a_json_that_is_not_coco_is_refused(damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = damaged / "annotations" / "instances_validation.json"
    edit_coco(val, lambda raw: raw.pop("categories"))
    assert f"{val} is not a COCO instance file: it has no list 'categories'" in _refused(damaged, tmp_path, capsys)


def test_an_annotation_of_a_missing_image_is_named(
    damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = damaged / "annotations" / "instances_training.json"
    edit_coco(train, lambda raw: raw["annotations"][0].update(image_id=9999))
    assert "points at image 9999, which the file does not list" in _refused(damaged, tmp_path, capsys)
    edit_coco(train, lambda raw: raw["annotations"][0].update(image_id=raw["images"][0]["id"]))
    (damaged / "images" / "training" / "000003.png").unlink()
    line = _refused(damaged, tmp_path, capsys)
    assert f"is {damaged / 'images' / 'training' / '000003.png'}, which does not exist" in line


def test_a_category_not_listed_is_named(damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_coco(damaged / "annotations" / "instances_validation.json",
              lambda raw: raw["annotations"][2].update(category_id=42))
    assert "has category_id 42, not among the file's categories [1, 2, 3" in _refused(damaged, tmp_path, capsys)


@pytest.mark.parametrize("box", [[3, 4, 0, 5], [3, 4, 5, -2]])
def test_an_empty_or_negative_box_is_refused(
    box: list[int], damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_coco(damaged / "annotations" / "instances_training.json", lambda raw: raw["annotations"][1].update(bbox=box))
    assert f"has the empty or negative box {box}" in _refused(damaged, tmp_path, capsys)


def test_a_polygon_outside_its_image_is_refused(
    damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_coco(damaged / "annotations" / "instances_training.json",
              lambda raw: raw["annotations"][0].update(segmentation=[[1, 1, 70, 1, 70, 9]]))
    assert "has a polygon outside its 64x64 image" in _refused(damaged, tmp_path, capsys)
