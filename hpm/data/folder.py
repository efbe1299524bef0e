"""Images on disk: ``root/<split>/<class_name>/<image files>``, or unlabelled (ADE20K's layout, a flat folder).

:mod:`hpm.data.layout` says how a folder's layout is recognised.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hpm.data.folder_index import FolderListing, list_split
from hpm.data.layout import ACCEPTED_LAYOUTS, Layout, detect_layout, describe_layout, unlabelled_split_dir
from hpm.data.probe import probe_spread
from hpm.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

_LOG = logging.getLogger(__name__)
_LAYOUT = "expected layout: ROOT/<split>/<class_name>/<image files> (e.g. ROOT/train/cat/001.jpg)"
NO_LABEL = -1
"""The label of every image of an unlabelled folder."""


@dataclass(frozen=True)
class Unreadable:
    """What a data set returns instead of ``(image, label)`` for a file it cannot decode.

    Deliberately not a tuple: code that forgets to check for it fails when it unpacks or
    indexes the item, instead of silently taking the path for an image.

    Attributes:
        path: The file that could not be read (missing, truncated or not an image).
    """

    path: str


def _is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _to_8bit(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer images onto 0..255 (PIL's own conversion would clip them)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        array = np.asarray(image).astype(np.int64)
        if image.mode.startswith("I;16") or array.max(initial=0) > 255:
            array = np.clip(array, 0, 65535) // 257
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")  # avoids PIL's palette-transparency warning
    return image


def to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """An opened PIL image as a uint8 tensor ``[channels, H, W]`` (greyscale "L" or "RGB")."""
    mode = "L" if channels == 1 else "RGB"
    array = np.array(_to_8bit(image).convert(mode))  # [H, W] or [H, W, 3] uint8
    tensor = torch.from_numpy(array)
    if array.ndim == 2:
        return tensor.unsqueeze(0)  # [1, H, W] uint8
    return tensor.permute(2, 0, 1).contiguous()  # [3, H, W] uint8


def read_image(path: str | Path | BinaryIO, channels: int) -> torch.Tensor:
    """Decode one image file.

    Args:
        path: The image file, or a binary file object holding its bytes.
        channels: 1 for greyscale ("L"), 3 for RGB.

    Returns:
        A uint8 tensor ``[channels, H, W]``.

    Raises:
        Exception: Whatever PIL raises for a missing, truncated or undecodable file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. EXIF or DecompressionBomb warnings
        with Image.open(path) as image:
            return to_tensor(image, channels)


class ImageFolderDataset(Dataset):
    """Images of ``root/<split>/<class_name>/...`` (labelled) or of an unlabelled layout (ADE20K's
    ``root/images/training/``, or a flat folder searched recursively: see :mod:`hpm.data.layout`);
    unreadable files give :class:`Unreadable`.

    Labels are indices into the sorted class folder names; an unlabelled folder has no classes,
    ``num_classes`` 0 and every label :data:`NO_LABEL` (pre-training ignores labels). Files are
    found recursively by extension (case-insensitive); hidden files and folders are ignored.
    The file list is cached (see :mod:`hpm.data.folder_index`) and reused while the folders
    are unchanged, so a restart on a large folder does not walk it again.

    Args:
        root: The data set root.
        split: Split to read (``"train"``, ``"val"``, ...): a sub-folder of ``root`` (classes),
            ``images/training`` or ``images/validation`` (ADE20K) or ``root`` itself (flat, train only).
        channels: 1 (greyscale) or 3 (RGB); every image is converted to it.

    Attributes:
        layout: ``"classes"``, ``"ade20k"`` or ``"flat"``.

    Raises:
        DataError: The folders are missing, ambiguous, or hold no classes (a split folder without
            class folders) or no image files.
    """

    def __init__(self, root: str | Path, split: str = "train", channels: int = 3) -> None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.split = split
        self.channels = channels
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist; {ACCEPTED_LAYOUTS}")
        self.layout: Layout = detect_layout(self.root, split)
        if self.layout == "classes":
            split_dir = self.root / split
            listing = self._class_listing(split_dir)
            self.samples: list[tuple[str, int]] = [
                (os.path.join(str(split_dir), rel), label) for label, files in enumerate(listing.files) for rel in files
            ]
        else:
            split_dir = unlabelled_split_dir(self.root, split, self.layout)
            listing = list_split(split_dir, _is_image_file, labelled=False)
            self.samples = [(os.path.join(str(split_dir), rel), NO_LABEL) for rel in listing.files[0]]
        self.classes: list[str] = listing.classes
        if not self.samples:
            raise DataError(self._no_images(split_dir))
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)  # [N]
        self.num_classes = len(self.classes)

    def _class_listing(self, split_dir: Path) -> FolderListing:
        """The listing of a labelled split folder, which must exist and hold class folders."""
        if not split_dir.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise DataError(
                f"split folder {split_dir} does not exist (sub-folders of {self.root}: "
                f"{present or 'none'}); {_LAYOUT}"
            )
        listing = list_split(split_dir, _is_image_file)
        if not listing.classes:
            raise DataError(
                f"{split_dir} holds no class folders; put each class's images in its own "
                f"sub-folder; {_LAYOUT}"
            )
        return listing

    def _no_images(self, split_dir: Path) -> str:
        """The one-line error for a split without image files."""
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        if self.layout == "classes":
            return (
                f"no image files in the {len(self.classes)} class folders of {split_dir}; "
                f"accepted extensions: {extensions}"
            )
        return (
            f"no image files in {split_dir} or its sub-folders (read as {describe_layout(self.layout)}); "
            f"{ACCEPTED_LAYOUTS}; accepted extensions: {extensions}"
        )

    def __len__(self) -> int:
        return len(self.samples)

    def source(self, index: int) -> tuple[str, int]:
        """``(file to open, label)`` of a sample (what :func:`read_image` and PIL accept)."""
        return self.samples[index]

    def name(self, index: int) -> str:
        """How logs and :class:`Unreadable` name a sample: its full path."""
        return self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        """Return ``(image, label)`` (uint8 ``[C, H, W]``, int), or ``Unreadable(path)``."""
        return read_or_unreadable(self, index)


class ImageSource(Protocol):
    """A labelled image data set whose samples are files or encoded bytes (folders, shards)."""

    channels: int
    labels: np.ndarray
    classes: list[str]
    num_classes: int

    def source(self, index: int) -> tuple[str | BinaryIO, int]: ...

    def name(self, index: int) -> str: ...

    def __len__(self) -> int: ...


def read_or_unreadable(dataset: ImageSource, index: int) -> tuple[torch.Tensor, int] | Unreadable:
    """Decode sample ``index`` as ``(uint8 [C, H, W], label)``, or name it in an :class:`Unreadable`."""
    try:
        file, label = dataset.source(index)
        return read_image(file, dataset.channels), label
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop training
        _LOG.debug("skipping unreadable image %s: %s", dataset.name(index), exc)
        return Unreadable(dataset.name(index))


def check_readable(dataset: ImageSource, max_files: int = 64) -> None:
    """Fail early when a data set's files cannot be decoded at all.

    Opens up to ``max_files`` files spread evenly over the data set. Logs a warning if some
    of them fail; a few corrupt files are tolerated (they are skipped during training).

    Args:
        dataset: The data set to probe.
        max_files: How many files to try at most.

    Raises:
        DataError: None of the files checked could be read.
    """
    def open_one(index: int) -> str | None:
        try:
            read_image(dataset.source(index)[0], dataset.channels)
        except Exception as exc:  # noqa: BLE001
            return f"{dataset.name(index)}: {type(exc).__name__}: {exc}"
        return None

    tried, failures = probe_spread(len(dataset), max_files, open_one)
    if len(failures) == tried:
        raise DataError(
            f"none of the {tried} files checked could be read, e.g. {failures[0]}; "
            "check that the files are images and not e.g. Git LFS pointers or partial downloads"
        )
    if failures:
        _LOG.warning("%d of %d image files checked could not be read and will be skipped, e.g. %s",
                     len(failures), tried, failures[0])
