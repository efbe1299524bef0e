"""COCO AP by pycocotools: the ground truth given as predictions scores 1.0 (a hand-made case), and
torchvision's detections become COCO results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.data.scenes import encode_rle, mask_bbox
from hpm.eval.detect import CocoSplit, coco_scores, ground_truth, to_coco_results


def _hand_split() -> CocoSplit:
    """Two 40 x 40 images: a medium square and a small bar in the first, a small square in the second."""
    shapes = {1: [(2, 2, 36, 36, 1), (0, 38, 4, 2, 2)], 2: [(5, 10, 20, 20, 2)]}
    images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 40} for i in shapes]
    anns, n = {}, 0
    for image_id, boxes in shapes.items():
        anns[image_id] = []
        for x, y, w, h, cat in boxes:
            mask = np.zeros((40, 40), dtype=bool)
            mask[y:y + h, x:x + w] = True
            n += 1
            anns[image_id].append({"id": n, "image_id": image_id, "category_id": cat, "bbox": mask_bbox(mask),
                                   "area": int(mask.sum()), "segmentation": encode_rle(mask), "iscrowd": 0})
    return CocoSplit(Path("gt.json"), Path("."), images, anns, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])


def test_the_ground_truth_as_predictions_scores_ap_1() -> None:
    split = _hand_split()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
                "segmentation": a["segmentation"]} for anns in split.anns.values() for a in anns]
    scores = coco_scores(ground_truth(split), results)
    for kind in ("box", "mask"):
        assert scores[kind]["AP"] == pytest.approx(1.0) and scores[kind]["AP50"] == pytest.approx(1.0), kind
        assert scores[kind]["APs"] == pytest.approx(1.0) and scores[kind]["APm"] == pytest.approx(1.0), kind
        assert scores[kind]["APl"] is None  # no large object: the range is not scored
    wrong = [{**r, "category_id": 3 - r["category_id"]} for r in results]
    assert coco_scores(ground_truth(split), wrong)["box"]["AP"] == 0.0
    assert coco_scores(ground_truth(split), [])["mask"]["AP"] == 0.0


def test_detections_become_coco_results() -> None:
    masks = torch.zeros(1, 1, 10, 12)  # [N, 1, H, W] probabilities
    masks[0, 0, 2:5, 3:9] = 0.8
    output = {"boxes": torch.tensor([[3.0, 2.0, 9.0, 5.0]]), "labels": torch.tensor([2]),
              "scores": torch.tensor([0.75]), "masks": masks}
    (result,) = to_coco_results(output, image_id=7, cat_ids=[4, 9])
    assert result["image_id"] == 7 and result["category_id"] == 9 and result["score"] == 0.75
    assert result["bbox"] == [3.0, 2.0, 6.0, 3.0]  # [x, y, w, h]
    assert result["segmentation"] == encode_rle((masks[0, 0] > 0.5).numpy())
