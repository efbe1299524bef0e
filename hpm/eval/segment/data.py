"""Segmentation data in ADE20K's layout, checked before training, with joint image/label transforms.

``DIR/images/{training,validation}/*.{png,jpg}`` and, for each image, the index PNG
``DIR/annotations/{training,validation}/<same stem>.png`` (mode ``L`` or ``P``, one class per
pixel value). ``--reduce-zero-label`` applies ADE20K's convention: label 0 (unlabelled) becomes
the ignore value 255 and every other label drops by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from hpm.errors import DataError
from hpm.eval.segment.recipes import IGNORE_INDEX, SegmentConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INDEX_MODES = ("L", "P")  # an annotation's PIL modes: one index per pixel
Pair = tuple[Path, Path]  # (image, annotation)


@dataclass(frozen=True)
class SegmentData:
    """The checked training pairs (the labelled ones) and validation pairs, and how to read them.

    Attributes:
        train: The training pairs used (all, or the ``labels`` chosen).
        val: The validation pairs.
        num_train_all: Training pairs in the folder.
        channels: Image channels the encoder takes (1: images are read as grey).
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        labels: The number of labelled training images asked for (None: all).
        seed: The seed of their choice.
    """

    root: Path
    train: list[Pair]
    val: list[Pair]
    num_train_all: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: int | None = None
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for result files (and the resume check)."""
        return {
            "folder": str(self.root.resolve()), "num_train": len(self.train), "num_val": len(self.val),
            "num_train_all": self.num_train_all, "labels": self.labels, "labels_seed": self.seed,
            "channels": self.channels, "mean": list(self.mean), "std": list(self.std),
        }


def find_pairs(root: Path, split: str) -> list[Pair]:
    """The (image, annotation) pairs of one split, sorted by name.

    Raises:
        DataError: The split has no image, or an image has no annotation (named).
    """
    images = sorted(p for p in (root / "images" / split).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"no images in {root / 'images' / split}; --data-dir must be in ADE20K's layout: "
                        "images/{training,validation}/ and annotations/{training,validation}/")
    pairs = []
    for image in images:
        annotation = root / "annotations" / split / f"{image.stem}.png"
        if not annotation.is_file():
            raise DataError(f"image {image} has no annotation: {annotation} is missing")
        pairs.append((image, annotation))
    return pairs


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K's convention: 0 becomes the ignore value, every other label minus 1 (255 stays 255)."""
    out = label.astype(np.int64) - 1  # [H, W]
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out


def read_label(annotation: Path, reduce: bool) -> np.ndarray:
    """An annotation's labels as int64 ``[H, W]`` (reduced when ``reduce``)."""
    with Image.open(annotation) as img:
        label = np.asarray(img, dtype=np.int64)  # [H, W]
    return reduce_zero_label(label) if reduce else label


def check_pair(image: Path, annotation: Path, cfg: SegmentConfig) -> None:
    """Refuse a colour annotation, an annotation of another size, or a label outside the classes.

    Raises:
        DataError: Naming the file and what is wrong.
    """
    with Image.open(image) as img, Image.open(annotation) as ann:
        if ann.mode not in INDEX_MODES:
            raise DataError(f"annotation {annotation} is a colour ({ann.mode}) image; annotations must be index PNGs "
                            "(mode L or P, one class index per pixel)")
        if img.size != ann.size:
            raise DataError(f"image {image} is {img.size[0]}x{img.size[1]} but its annotation {annotation} is "
                            f"{ann.size[0]}x{ann.size[1]}; they must be the same size")
    values = np.unique(read_label(annotation, cfg.reduce_zero_label))
    bad = values[(values >= cfg.num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        reduced = " after --reduce-zero-label" if cfg.reduce_zero_label else ""
        raise DataError(f"annotation {annotation} has label {int(bad[0])}{reduced}, not below the class count "
                        f"{cfg.num_classes} nor the ignore value {IGNORE_INDEX}; set num_classes=N "
                        "(or --reduce-zero-label for ADE20K's labels)")


def choose_labelled(pairs: list[Pair], labels: int | None, seed: int) -> list[Pair]:
    """``labels`` training pairs drawn without replacement by ``seed``, in name order (all: None).

    Raises:
        DataError: More labelled images asked for than there are.
    """
    if labels is None:
        return pairs
    if not 0 < labels <= len(pairs):
        raise DataError(f"--labels {labels}: the training split has {len(pairs)} images")
    chosen = np.random.default_rng(seed).choice(len(pairs), size=labels, replace=False)
    return [pairs[i] for i in sorted(chosen.tolist())]


def load_segment_data(
    root: str | Path, cfg: SegmentConfig, channels: int, mean: tuple[float, ...], std: tuple[float, ...],
    labels: int | None = None, seed: int = 0,
) -> SegmentData:
    """Find, choose and check the pairs of both splits; reads every annotation used once.

    Raises:
        DataError: A missing split, image without annotation, colour annotation, size mismatch or
            label outside the classes (the first one found, named).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data-dir {root} is not a directory")
    everything = find_pairs(root, "training")
    train, val = choose_labelled(everything, labels, seed), find_pairs(root, "validation")
    for image, annotation in train + val:
        check_pair(image, annotation, cfg)
    return SegmentData(root, train, val, len(everything), channels, mean, std, labels, seed)


def train_transform(cfg: SegmentConfig, data: SegmentData) -> v2.Compose:
    """Random rescale (``scale_range`` of a ``crop x 4 crop`` frame), random crop (labels padded with
    the ignore value), horizontal flip and normalisation, applied alike to image and labels."""
    return v2.Compose([
        v2.ScaleJitter((cfg.crop_size, 4 * cfg.crop_size), scale_range=cfg.scale_range),
        v2.RandomCrop(cfg.crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        v2.RandomHorizontalFlip(cfg.hflip),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(data.mean, data.std),
    ])


def eval_transform(cfg: SegmentConfig, data: SegmentData) -> v2.Compose:
    """The image's shorter side resized to the crop size and normalised (labels stay as they are)."""
    return v2.Compose([
        v2.Resize(cfg.crop_size),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(data.mean, data.std),
    ])


class SegmentationDataset(Dataset):
    """Pairs as ``(image [C, H, W] float, labels [H', W'] int64)``: training crops (``train``) or
    resized images with their labels at full size."""

    def __init__(self, pairs: list[Pair], cfg: SegmentConfig, data: SegmentData, train: bool) -> None:
        self.pairs, self.cfg, self.train = pairs, cfg, train
        self.mode = "L" if data.channels == 1 else "RGB"
        self.transform = train_transform(cfg, data) if train else eval_transform(cfg, data)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_file, annotation = self.pairs[index]
        with Image.open(image_file) as img:
            image = tv_tensors.Image(pil_to_tensor(img.convert(self.mode)))  # [C, H, W] uint8
        label = read_label(annotation, self.cfg.reduce_zero_label)  # [H, W]
        if not self.train:
            return self.transform(image).as_subclass(Tensor), torch.from_numpy(label)
        mask = tv_tensors.Mask(torch.from_numpy(label.astype(np.uint8)))  # [H, W]; labels fit a byte
        image, mask = self.transform(image, mask)
        return image.as_subclass(Tensor), mask.as_subclass(Tensor)
