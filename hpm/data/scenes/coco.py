"""COCO instance annotations of scenes: visible masks as RLE, their boxes and areas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from hpm.data.fashion_mnist import FASHION_MNIST_CLASSES
from hpm.data.scenes.compose import Scene


def coco_categories() -> list[dict[str, Any]]:
    """Fashion-MNIST's ten classes as COCO categories with ids 1-10 (class + 1)."""
    return [
        {"id": label + 1, "name": name, "supercategory": "fashion"}
        for label, name in enumerate(FASHION_MNIST_CLASSES)
    ]


def mask_bbox(mask: np.ndarray) -> list[int]:
    """The tight ``[x, y, width, height]`` box of a non-empty bool ``[H, W]`` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A bool ``[H, W]`` mask as COCO's compressed RLE, ``counts`` as text (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


class CocoInstances:
    """The COCO instance file of one split, built scene by scene.

    Args:
        info: The file's ``info`` entry (how the scenes were made).
    """

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, scene: Scene, image_id: int, file_name: str) -> None:
        """Record a scene's image and one annotation per item that shows (fully covered: none).

        Args:
            scene: The composed scene.
            image_id: Its COCO image id.
            file_name: Its file name inside the split's image folder.
        """
        height, width = scene.index_map.shape
        self.images.append({
            "id": image_id,
            "file_name": file_name,
            "width": int(width),
            "height": int(height),
            "source_indices": list(scene.source_indices),
            "fragment_indices": list(scene.fragment_indices),
        })
        for mask, category_id, source in zip(scene.visible, scene.category_ids, scene.source_indices):
            area = int(mask.sum())
            if area == 0:
                continue
            self.annotations.append({
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "segmentation": encode_rle(mask),
                "area": area,
                "bbox": mask_bbox(mask),
                "iscrowd": 0,
                "source_index": source,
            })

    def write(self, path: Path) -> None:
        """Write the JSON file (under a temporary name first, then renamed)."""
        payload = {
            "info": self.info,
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": coco_categories(),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        os.replace(tmp, path)
