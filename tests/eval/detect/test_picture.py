"""The detection pictures: ground truth beside predictions, small images upscaled, images of
different sizes padded into one grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hpm.eval.detect.data import CocoSplit
from hpm.eval.detect.picture import draw_instances, draw_predictions, picture_scale


def _split(tmp_path: Path) -> CocoSplit:
    """Two grey images, 32 x 48 and 64 x 64 (H x W), each with one square instance."""
    images, anns = [], {}
    for i, (h, w) in enumerate([(32, 48), (64, 64)], start=1):
        Image.fromarray(np.full((h, w), 90, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": h, "width": w})
        square = [4.0, 4.0, 20.0, 4.0, 20.0, 20.0, 4.0, 20.0]  # x, y pairs
        anns[i] = [{"id": i, "image_id": i, "category_id": 3, "bbox": [4.0, 4.0, 16.0, 16.0],
                    "segmentation": [square], "area": 256.0, "iscrowd": 0}]
    return CocoSplit(tmp_path / "x.json", tmp_path, images, anns, [{"id": 3, "name": "bag"}])


def test_small_images_are_upscaled_with_their_boxes(tmp_path: Path) -> None:
    split = _split(tmp_path)
    assert (picture_scale(32, 48), picture_scale(64, 64), picture_scale(1024, 800)) == (5, 4, 1)
    tile = draw_instances(split, split.images[1], split.anns[2])  # [3, 256, 256]
    assert tile.shape == (3, 256, 256) and tile.dtype == torch.uint8
    yellow = (tile[0] > 200) & (tile[1] > 200) & (tile[2] < 80)  # [256, 256]
    assert yellow[16, 16:80].all() and yellow[16:80, 16].all()  # the box's corner at 4 px x 4
    assert not yellow[100:, 100:].any()  # nothing drawn away from the instance
    bare = draw_instances(split, split.images[1], [], scale=1)
    assert bare.shape == (3, 64, 64) and bool((bare == 90).all())


def test_the_grid_pads_images_of_different_sizes_and_drops_low_scores(tmp_path: Path) -> None:
    split = _split(tmp_path)
    results = [{**split.anns[1][0], "score": 0.9}, {**split.anns[2][0], "score": 0.1}]
    out = draw_predictions(split, results, tmp_path / "pic" / "p.png", min_score=0.3)
    grid = np.array(Image.open(out))  # [H, W, 3]
    assert grid.shape == (2 * 258 + 2, 2 * 258 + 2, 3)  # 2 x 2 tiles of 256 px, 2 px apart
    tiles = [grid[2 + r * 258: 258 + r * 258, 2 + c * 258: 258 + c * 258] for r in range(2) for c in range(2)]
    drawn = [bool(((t[..., 0] > 200) & (t[..., 1] > 200) & (t[..., 2] < 80)).any()) for t in tiles]
    assert drawn == [True, True, True, False]  # the second image's only prediction scores 0.1
    assert (tiles[0][160:, :] == 0).all()  # the 32 x 48 image (160 x 240 upscaled) padded with black
