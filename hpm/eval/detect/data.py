"""Instance data in COCO's JSON format, checked before training, with joint image/target transforms.

``DIR/images/{training,validation}/`` with ``DIR/annotations/instances_{training,validation}.json``
(or any JSON and image folder given one by one). Every image, annotation and category is checked
up front: a file that is not COCO, an annotation of a missing image, a category not listed, an
empty or negative box, a polygon outside its image or an RLE of another size is refused, named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from hpm.errors import DataError
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.segment.data import choose_labelled

COCO_KEYS = ("images", "annotations", "categories")
SPLITS = ("training", "validation")


@dataclass(frozen=True)
class CocoSplit:
    """One checked COCO file: its images (COCO entries, name order) and their annotations."""

    json_file: Path
    image_dir: Path
    images: list[dict[str, Any]]
    anns: dict[int, list[dict[str, Any]]]  # image id -> its annotations
    categories: list[dict[str, Any]]

    def subset(self, images: list[dict[str, Any]]) -> CocoSplit:
        """The same file restricted to ``images``."""
        return CocoSplit(self.json_file, self.image_dir, images, self.anns, self.categories)


@dataclass(frozen=True)
class DetectData:
    """The labelled training images, the validation images and how to read them.

    Attributes:
        cat_ids: COCO category ids in label order (label ``i + 1`` is ``cat_ids[i]``; 0 is background).
        num_train_all: Training images in the file.
        channels: Image channels the encoder takes (1: images are read as grey).
        labels: The number of labelled training images asked for (None: all).
    """

    train: CocoSplit
    val: CocoSplit
    cat_ids: list[int]
    num_train_all: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: int | None = None
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for result files (and the resume check)."""
        return {
            "train_json": str(self.train.json_file.resolve()), "val_json": str(self.val.json_file.resolve()),
            "num_train": len(self.train.images), "num_val": len(self.val.images), "num_train_all": self.num_train_all,
            "labels": self.labels, "labels_seed": self.seed, "categories": len(self.cat_ids),
            "channels": self.channels, "mean": list(self.mean), "std": list(self.std),
        }


def coco_paths(
    data_dir: str | Path | None, jsons: tuple[Any, Any], image_dirs: tuple[Any, Any],
) -> list[tuple[Path, Path]]:
    """``(json, image folder)`` of training and validation: given one by one, else in ``data_dir``'s layout.

    Raises:
        DataError: Neither ``data_dir`` nor both files and folders given.
    """
    paths = []
    for split, json_file, image_dir in zip(SPLITS, jsons, image_dirs, strict=True):
        if data_dir is None and (json_file is None or image_dir is None):
            raise DataError(f"give --data-dir, or the {split} split's JSON and image folder (--train-json/--val-json "
                            "with --train-images/--val-images)")
        root = Path(data_dir) if data_dir is not None else Path()
        paths.append((Path(json_file or root / "annotations" / f"instances_{split}.json"),
                      Path(image_dir or root / "images" / split)))
    return paths


def _read_json(json_file: Path) -> dict[str, Any]:
    if not json_file.is_file():
        raise DataError(f"COCO file {json_file} does not exist")
    try:
        raw = json.loads(json_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_file} is not JSON: {exc}") from None
    missing = [k for k in COCO_KEYS if not isinstance(raw, dict) or not isinstance(raw.get(k), list)]
    if missing:
        raise DataError(f"{json_file} is not a COCO instance file: it has no list {', '.join(map(repr, missing))} "
                        f"(needs {', '.join(COCO_KEYS)})")
    return raw


def check_annotation(ann: dict[str, Any], image: dict[str, Any], cat_ids: set[int], where: str) -> None:
    """Refuse an annotation with an unknown category, an empty or negative box, a polygon outside
    its image or an RLE of another size.

    Raises:
        DataError: Naming the file, the annotation and what is wrong.
    """
    if ann.get("category_id") not in cat_ids:
        raise DataError(f"{where} has category_id {ann.get('category_id')!r}, not among the file's categories "
                        f"{sorted(cat_ids)}")
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4) or box[2] <= 0 or box[3] <= 0:
        raise DataError(f"{where} has the empty or negative box {box!r}; a box is [x, y, width, height], width "
                        "and height > 0")
    seg, width, height = ann.get("segmentation"), image["width"], image["height"]
    if isinstance(seg, list):
        points = np.array([v for poly in seg for v in poly], dtype=np.float64).reshape(-1, 2)  # [P, 2] as (x, y)
        if len(points) and (points.min() < 0 or points[:, 0].max() > width or points[:, 1].max() > height):
            raise DataError(f"{where} has a polygon outside its {width}x{height} image")
    elif isinstance(seg, dict):
        if list(seg.get("size", [])) != [height, width]:
            raise DataError(f"{where} has an RLE mask of size {seg.get('size')}, not the image's [{height}, {width}]")
    else:
        raise DataError(f"{where} has no segmentation (a polygon list or an RLE); Mask R-CNN needs masks")


def read_coco(json_file: Path, image_dir: Path) -> CocoSplit:
    """Read and check one COCO instance file and its image folder.

    Raises:
        DataError: The first problem found, naming the file and the entry.
    """
    raw = _read_json(json_file)
    cat_ids = {c.get("id") for c in raw["categories"]}
    images: dict[int, dict[str, Any]] = {}
    for image in raw["images"]:
        if not all(k in image for k in ("id", "file_name", "width", "height")):
            raise DataError(f"{json_file}: image entry {image!r} lacks id, file_name, width or height")
        if not (image_dir / image["file_name"]).is_file():
            raise DataError(f"{json_file}: image {image['id']} is {image_dir / image['file_name']}, "
                            "which does not exist")
        images[image["id"]] = image
    anns: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for n, ann in enumerate(raw["annotations"]):
        where = f"{json_file}: annotation {ann.get('id', f'#{n}')}"
        if ann.get("image_id") not in images:
            raise DataError(f"{where} points at image {ann.get('image_id')!r}, which the file does not list")
        check_annotation(ann, images[ann["image_id"]], cat_ids, where)
        anns[ann["image_id"]].append(ann)
    ordered = sorted(images.values(), key=lambda im: str(im["file_name"]))
    return CocoSplit(json_file, image_dir, ordered, anns, raw["categories"])


def load_detect_data(
    paths: list[tuple[Path, Path]], channels: int, mean: tuple[float, ...], std: tuple[float, ...],
    labels: int | None = None, seed: int = 0,
) -> DetectData:
    """Read and check both splits and choose the labelled training images.

    Raises:
        DataError: A file that is not COCO, or a bad entry (the first one, named); splits with other categories.
    """
    train, val = (read_coco(json_file, image_dir) for json_file, image_dir in paths)
    cat_ids = sorted(int(c["id"]) for c in train.categories)
    if cat_ids != sorted(int(c["id"]) for c in val.categories):
        raise DataError(f"{train.json_file} and {val.json_file} list different categories")
    if not val.images:
        raise DataError(f"{val.json_file} lists no image to evaluate on")
    chosen = train.subset(choose_labelled(train.images, labels, seed))
    return DetectData(chosen, val, cat_ids, len(train.images), channels, mean, std, labels, seed)


def decode_masks(anns: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """The annotations' masks as uint8 ``[K, H, W]`` (polygons and RLE alike)."""
    masks = np.zeros((len(anns), height, width), dtype=np.uint8)  # [K, H, W]
    for k, ann in enumerate(anns):
        seg = ann["segmentation"]
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = seg
        masks[k] = mask_utils.decode(rle)
    return masks


def train_transform(cfg: DetectConfig) -> v2.Compose:
    """Large-scale jitter (rescale in ``scale_range`` of the image size, then a padded crop of it),
    horizontal flip, boxes left empty by the crop dropped, pixels to [0, 1]."""
    size = cfg.image_size
    return v2.Compose([
        v2.ScaleJitter((size, size), scale_range=cfg.scale_range),
        v2.RandomCrop(size, pad_if_needed=True),
        v2.RandomHorizontalFlip(cfg.hflip),
        v2.SanitizeBoundingBoxes(min_size=1.0),
        v2.ToDtype(torch.float32, scale=True),
    ])


class DetectionDataset(Dataset):
    """Training: ``(image [C, S, S] float, target)`` with ``boxes`` (xyxy), ``labels`` and ``masks``;
    boxes under ``min_box_size`` and crowd regions are left out. Evaluation: ``(image [C, H, W]
    float, image id)`` at the image's own size (the model resizes, and maps predictions back)."""

    def __init__(self, split: CocoSplit, data: DetectData, cfg: DetectConfig, train: bool) -> None:
        self.split, self.cfg, self.train = split, cfg, train
        self.label_of = {cat: i + 1 for i, cat in enumerate(data.cat_ids)}
        self.mode = "L" if data.channels == 1 else "RGB"
        self.transform = train_transform(cfg)

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        entry = self.split.images[index]
        with Image.open(self.split.image_dir / entry["file_name"]) as img:
            image = tv_tensors.Image(pil_to_tensor(img.convert(self.mode)))  # [C, H, W] uint8
        if not self.train:
            return image.as_subclass(Tensor).float() / 255, entry["id"]
        min_size = self.cfg.min_box_size
        anns = [a for a in self.split.anns[entry["id"]]
                if not a.get("iscrowd", 0) and a["bbox"][2] >= min_size and a["bbox"][3] >= min_size]
        height, width = image.shape[-2:]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)  # [K, 4]
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), format="XYXY",
                                              canvas_size=(height, width)),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),  # [K]
            "masks": tv_tensors.Mask(torch.from_numpy(decode_masks(anns, height, width))),  # [K, H, W]
        }
        image, target = self.transform(image, target)
        return image.as_subclass(Tensor), {k: v.as_subclass(Tensor) for k, v in target.items()}


def collate(batch: list[tuple[Tensor, Any]]) -> tuple[list[Tensor], list[Any]]:
    """Images and targets as lists (their sizes and instance counts differ)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
