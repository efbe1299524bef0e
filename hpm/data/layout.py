"""How an image folder (``--data-dir DIR``) is laid out, and which folder holds each split.

Three layouts of loose image files are accepted (a pack of shards, ``hpm data pack``, is told
apart before them by its index file, see :func:`~hpm.data.source.open_image_dataset`):

- ``"classes"``: ``DIR/<split>/<class>/<images>`` (ImageNet's layout), the only labelled one.
  Recognised by a ``DIR/train/`` or ``DIR/val/`` folder, or ``DIR/<split>/`` for the split
  asked for.
- ``"ade20k"``: ``DIR/images/training/`` (train) and ``DIR/images/validation/`` (val), ADE20K's
  layout and what ``hpm data scenes`` writes; unlabelled, ``DIR/annotations/`` is not read.
  Recognised by a ``DIR/images/training/`` folder.
- ``"flat"``: any other folder: every image file below ``DIR``, searched recursively, forms
  the train split; unlabelled, no other split.

A folder with the marks of both the classes and the ADE20K layout is refused as ambiguous.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hpm.errors import DataError

Layout = Literal["classes", "ade20k", "flat"]

CLASS_SPLITS: tuple[str, ...] = ("train", "val")
ADE20K_SPLITS: dict[str, str] = {"train": "training", "val": "validation"}
ACCEPTED_LAYOUTS = (
    "accepted layouts: DIR/train/<class>/<images> (labelled, e.g. DIR/train/cat/001.jpg), "
    "DIR/images/training/<images> (ADE20K, unlabelled) or image files anywhere below DIR (unlabelled)"
)


def detect_layout(root: Path, split: str = "train") -> Layout:
    """The layout of ``root`` (an existing folder), by the marks listed in the module docstring.

    Args:
        root: The data folder.
        split: The split about to be read (its own folder also marks the classes layout).

    Raises:
        DataError: ``root`` has the marks of both the classes and the ADE20K layout.
    """
    class_marks = [s for s in dict.fromkeys((split, *CLASS_SPLITS)) if (root / s).is_dir()]
    ade20k = (root / "images" / ADE20K_SPLITS["train"]).is_dir()
    if class_marks and ade20k:
        raise DataError(
            f"{root} is ambiguous: it holds both {class_marks[0]}/ (class folders) and images/training/ "
            f"(ADE20K); keep one of them; {ACCEPTED_LAYOUTS}"
        )
    if class_marks:
        return "classes"
    return "ade20k" if ade20k else "flat"


def unlabelled_split_dir(root: Path, split: str, layout: Layout) -> Path:
    """The folder holding split ``split`` of an unlabelled layout (``"ade20k"`` or ``"flat"``).

    Raises:
        DataError: The layout has no such split (a flat folder has only ``train``).
    """
    if layout == "ade20k":
        split_dir = root / "images" / ADE20K_SPLITS.get(split, split)
        if not split_dir.is_dir():
            raise DataError(f"{root} has ADE20K's layout but no {split} split: {split_dir} does not exist")
        return split_dir
    if split != "train":
        raise DataError(
            f"{root} is a flat folder of unlabelled images, read as the train split only; it has no "
            f"{split} split; {ACCEPTED_LAYOUTS}"
        )
    return root


def describe_layout(layout: Layout) -> str:
    """A few words naming a layout, for messages."""
    return {
        "classes": "class folders, DIR/<split>/<class>/",
        "ade20k": "ADE20K's layout, DIR/images/training/, without class labels",
        "flat": "a flat folder searched recursively, without class labels",
    }[layout]


def no_labels_message(root: str | Path, task: str = "k-NN, linear probing and fine-tuning") -> str:
    """The one-line error for an evaluation that needs class labels on an unlabelled folder."""
    layout = detect_layout(Path(root))
    return (
        f"{root} has no class labels (read as {describe_layout(layout)}); {task} need labelled images, "
        f"one sub-folder per class: {root}/train/<class>/<images> and {root}/val/<class>/<images>"
    )

