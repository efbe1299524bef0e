"""A picture of a detector's work: for a few validation images, the ground truth beside the
predicted boxes and masks (torchvision's drawing utilities)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid

from hpm.eval.detect.data import CocoSplit, decode_masks


def _drawn(image: Tensor, boxes: Tensor, masks: Tensor, labels: list[str]) -> Tensor:
    """``image`` (uint8 ``[3, H, W]``) with ``masks`` (bool ``[K, H, W]``) at half opacity and
    labelled ``boxes`` (xyxy)."""
    if len(boxes):
        image = draw_segmentation_masks(image, masks, alpha=0.5)
        image = draw_bounding_boxes(image, boxes, labels=labels, colors="yellow")
    return image


def _xyxy(xywh: list[list[float]]) -> Tensor:
    boxes = torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4)  # [K, 4] as x, y, w, h
    return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def picture_scale(height: int, width: int, target: int = 256) -> int:
    """The whole-number upscaling that brings a small image near ``target`` pixels (1 for large ones),
    so that the drawn labels stay readable."""
    return max(1, target // max(height, width, 1))


def draw_instances(split: CocoSplit, entry: dict[str, Any], anns: list[dict[str, Any]],
                   scale: int | None = None) -> Tensor:
    """One image of ``split`` (its record ``entry``), upscaled ``scale`` times (nearest; None:
    :func:`picture_scale`), with the boxes, masks and category names of ``anns`` (COCO annotations
    or results): uint8 ``[3, sH, sW]``."""
    names = {c["id"]: str(c.get("name", c["id"])) for c in split.categories}
    with Image.open(split.image_dir / entry["file_name"]) as img:
        image = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)  # [3, H, W]
    height, width = image.shape[-2:]
    masks = torch.from_numpy(decode_masks(anns, height, width)).bool()  # [K, H, W]
    scale = picture_scale(height, width) if scale is None else scale
    if scale > 1:
        image = image.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # [3, sH, sW]
        masks = masks.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # [K, sH, sW]
    boxes = _xyxy([a["bbox"] for a in anns]) * scale  # [K, 4]
    return _drawn(image, boxes, masks, [names[a["category_id"]] for a in anns])


def padded(tiles: list[Tensor]) -> list[Tensor]:
    """``[3, H_i, W_i]`` images padded with black (right and bottom) to the largest height and width,
    as a grid needs."""
    height, width = max(t.shape[1] for t in tiles), max(t.shape[2] for t in tiles)
    return [torch.nn.functional.pad(t, (0, width - t.shape[2], 0, height - t.shape[1])) for t in tiles]


def draw_predictions(split: CocoSplit, results: list[dict[str, Any]], file: Path, count: int = 4,
                     min_score: float = 0.3) -> Path:
    """Write ``file`` (PNG): one row per validation image (the first ``count``), the ground truth on
    the left and the predictions scoring at least ``min_score`` on the right, small images upscaled."""
    tiles = []
    for entry in split.images[:count]:
        mine = [r for r in results if r["image_id"] == entry["id"] and r["score"] >= min_score]
        tiles += [draw_instances(split, entry, anns) for anns in (split.anns[entry["id"]], mine)]
    grid = make_grid(padded(tiles), nrow=2, padding=2)  # [3, H', W']
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(file)
    return file
