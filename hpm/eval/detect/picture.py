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


def draw_predictions(split: CocoSplit, results: list[dict[str, Any]], file: Path, count: int = 4,
                     min_score: float = 0.3) -> Path:
    """Write ``file`` (PNG): one row per validation image (the first ``count``), the ground truth on
    the left and the predictions scoring at least ``min_score`` on the right."""
    names = {c["id"]: str(c.get("name", c["id"])) for c in split.categories}
    tiles = []
    for entry in split.images[:count]:
        with Image.open(split.image_dir / entry["file_name"]) as img:
            image = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)  # [3, H, W]
        height, width = image.shape[-2:]
        truth = split.anns[entry["id"]]
        mine = [r for r in results if r["image_id"] == entry["id"] and r["score"] >= min_score]
        for anns in (truth, mine):
            masks = torch.from_numpy(decode_masks(anns, height, width)).bool()  # [K, H, W]
            labels = [names[a["category_id"]] for a in anns]
            tiles.append(_drawn(image, _xyxy([a["bbox"] for a in anns]), masks, labels))
    grid = make_grid(tiles, nrow=2, padding=2)  # [3, H', W']
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(file)
    return file
