"""COCO AP of a detector with pycocotools: predictions as COCO results, box and mask AP.

Scores are pycocotools' fractions (1.0: perfect); an area range without ground truth scores None.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import Dataset, Subset

from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, autocast
from hpm.eval.detect.data import CocoSplit

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six of COCOeval.stats
IOU_TYPES = {"box": "bbox", "mask": "segm"}
MASK_THRESHOLD = 0.5


def ground_truth(split: CocoSplit) -> COCO:
    """A pycocotools ``COCO`` of ``split`` (``iscrowd`` 0 and the box's area where the file has none)."""
    anns = []
    for n, ann in enumerate(a for image in split.images for a in split.anns[image["id"]]):
        anns.append({"id": n + 1, "iscrowd": 0, "area": ann["bbox"][2] * ann["bbox"][3], **ann})
    coco = COCO()
    coco.dataset = {"images": copy.deepcopy(split.images), "annotations": anns,
                    "categories": copy.deepcopy(split.categories)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def to_coco_results(output: dict[str, torch.Tensor], image_id: int, cat_ids: list[int]) -> list[dict[str, Any]]:
    """One image's detections (torchvision's boxes ``[N, 4]`` xyxy, labels, scores, masks ``[N, 1, H, W]``)
    as COCO results: ``[x, y, w, h]`` boxes, category ids and RLE masks thresholded at 0.5."""
    boxes = output["boxes"].float().cpu()  # [N, 4]
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    masks = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)  # [N, H, W]
    results = []
    labels, scores = output["labels"].tolist(), output["scores"].tolist()
    for k, (box, label, score) in enumerate(zip(xywh, labels, scores, strict=True)):
        rle = mask_utils.encode(np.asfortranarray(masks[k]))
        segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        results.append({"image_id": image_id, "category_id": cat_ids[label - 1], "bbox": [round(v, 2) for v in box],
                        "score": round(float(score), 5), "segmentation": segmentation})
    return results


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, cat_ids: list[int], device: torch.device, precision: Resolved, dist: D.DistInfo,
) -> list[dict[str, Any]]:
    """COCO results of every image of ``dataset`` (``(image, id)`` pairs), each process predicting every
    ``world_size``-th image; every process gets all of them, in image order."""
    was_training = model.training
    model.eval()
    mine = []
    for image, image_id in Subset(dataset, range(dist.rank, len(dataset), dist.world_size)):  # type: ignore[arg-type]
        with autocast(device, precision):
            (output,) = model([image.to(device)])
        mine.append((image_id, to_coco_results(output, image_id, cat_ids)))
    model.train(was_training)
    by_image = sorted((pair for part in D.all_gather_objects(mine) for pair in part), key=lambda p: str(p[0]))
    return [r for _, results in by_image for r in results]


def coco_scores(gt: COCO, results: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Box and mask ``AP, AP50, AP75, APs, APm, APl`` of ``results`` against ``gt`` (all 0 without results)."""
    if not results:
        return {kind: dict.fromkeys(STATS, 0.0) for kind in IOU_TYPES}
    scores = {}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        for kind, iou_type in IOU_TYPES.items():
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            scores[kind] = {name: (float(v) if v >= 0 else None) for name, v in zip(STATS, ev.stats, strict=False)}
    return scores
