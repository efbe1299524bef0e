"""Video clips on disk: ``root/<split>/<class_name>/<videos>``, or videos anywhere below ``root``
(a flat, unlabelled folder, train split only), sampled as VideoMAE samples them (see
:mod:`hpm.data.video.sampling`). A video is a file (``.mp4``, ``.webm``, ``.avi``, ``.mkv``) or
a folder of frames (``<video>/000001.jpg`` ...), see :mod:`hpm.data.video.listing`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from hpm.data.folder import IMAGE_EXTENSIONS, NO_LABEL, Unreadable
from hpm.data.folder_index import FolderListing
from hpm.data.shards import is_shard_dir
from hpm.data.video.augment import build_clip_transform
from hpm.data.video.decode import VIDEO_EXTENSIONS, UnreadableVideo
from hpm.data.video.listing import is_video_file, walk_video_split, walk_video_unlabelled
from hpm.data.video.read import read_clip
from hpm.errors import DataError

_LOG = logging.getLogger(__name__)
_LAYOUT = ("expected layout: ROOT/<split>/<class_name>/<videos> (e.g. ROOT/train/jump/001.mp4, or "
           "ROOT/train/jump/001/ holding the frames 000001.jpg ...)")
_FRAME_DEPTH = 2  # a frame folder's depth below ROOT/train: <class>/<video>/


def is_video_dir(root: str | Path) -> bool:
    """Whether ``--data-dir`` holds videos: the first video or image file found below
    ``root/train`` (or ``root`` when it has no ``train`` folder), in sorted walk order, decides.
    An image file in a sub-folder of a class folder (``root/train/<class>/<video>/``) is a
    frame of a frame folder, so video; one directly in a class folder, or anywhere in a folder
    without ``train``, is an image. A pack of shards, a missing folder or one without media
    files is not video."""
    root = Path(root)
    if not root.is_dir() or is_shard_dir(root):
        return False
    labelled = (root / "train").is_dir()
    top = root / "train" if labelled else root
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, top)
        depth = 0 if rel == "." else len(Path(rel).parts)
        for name in sorted(filenames):
            if is_video_file(name):
                return True
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                return labelled and depth >= _FRAME_DEPTH
    return False


def video_layout(root: str | Path) -> Literal["classes", "flat"]:
    """``classes`` when ``root`` has a ``train`` folder (class folders below it), else ``flat``."""
    return "classes" if (Path(root) / "train").is_dir() else "flat"


class VideoClipDataset(Dataset):
    """Clips of the videos in ``root/<split>/<class_name>/`` (or, ``layout="flat"``, every video
    below ``root``, unlabelled), video files or frame folders; an unreadable video (see
    :class:`~hpm.data.video.decode.UnreadableVideo`) gives :class:`Unreadable` naming it.

    Each item is ``num_frames`` frames ``stride`` apart, from a random start in training and
    the centre in evaluation, under one random resized crop and flip for the whole clip
    (training) or a resize and centre crop (evaluation). Labels are indices into the sorted
    class folder names. Indexed with ``(index, sample_seed)`` (as ``GlobalBatchSampler``
    yields), the start, crop and flip depend only on the seed; with a plain ``int`` they come
    from torch's generator.

    Args:
        root: The data set root.
        split: Split folder to read (``"train"``, ``"val"``).
        num_frames: Frames per clip (16 for VideoMAE).
        stride: Frames between two clip frames (4 for Kinetics, 2 for Something-Something).
        size: Side of the output frames in pixels.
        train: Random start, crop and flip; defaults to ``split == "train"``.
        channels: 1 (luma) or 3 (RGB).
        crop_scale: Range of the crop's area as a fraction of the frame (training).
        mean: Per-channel mean to normalise with; None keeps [0, 1].
        std: Per-channel standard deviation to normalise with.
        layout: ``classes`` (labels from the class folders) or ``flat`` (the files below
            ``root``, train split only, every label :data:`~hpm.data.folder.NO_LABEL`).

    Raises:
        DataError: The split folder is missing or holds no class folders or no videos.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_frames: int = 16,
        stride: int = 4,
        size: int = 224,
        train: bool | None = None,
        channels: int = 3,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        layout: Literal["classes", "flat"] = "classes",
    ) -> None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.split = split
        self.num_frames = num_frames
        self.stride = stride
        self.channels = channels
        self.train = split == "train" if train is None else train
        self.transform = build_clip_transform(size, self.train, crop_scale, mean, std)
        split_dir, listing = self._listing(layout)
        self.classes: list[str] = listing.classes
        labels = range(len(listing.files)) if listing.classes else [NO_LABEL]
        self.samples: list[tuple[str, int]] = [
            (os.path.join(str(split_dir), rel), label) for label, files in zip(labels, listing.files) for rel in files
        ]
        if not self.samples:
            extensions = ", ".join(sorted(VIDEO_EXTENSIONS))
            where = f"the class folders of {split_dir}" if layout == "classes" else str(split_dir)
            raise DataError(f"no videos in {where}: no video files ({extensions}) and no folders of image "
                            f"frames; {_LAYOUT}")
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)  # [N]
        self.num_classes = len(self.classes)  # 0 for a flat folder

    def _listing(self, layout: str) -> tuple[Path, FolderListing]:
        """The folder read and its videos: class folders of ``root/<split>``, or every video below ``root``."""
        if layout == "flat":
            if self.split != "train":
                raise DataError(f"{self.root} is a flat folder of videos, read as the train split only; "
                                f"it has no {self.split} split; {_LAYOUT}")
            return self.root, walk_video_unlabelled(self.root)
        split_dir = self.root / self.split
        if not split_dir.is_dir():
            raise DataError(f"split folder {split_dir} does not exist; {_LAYOUT}")
        listing = walk_video_split(split_dir)
        if not listing.classes:
            raise DataError(f"{split_dir} holds no class folders; {_LAYOUT}")
        return split_dir, listing

    def __len__(self) -> int:
        return len(self.samples)

    def _clip(self, index: int) -> tuple[torch.Tensor, int]:
        """Sample, decode and transform clip ``index`` with torch's current generator."""
        path, label = self.samples[index]
        rng = None
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        frames = read_clip(path, self.num_frames, self.stride, rng, self.channels)  # [T, C, H, W] uint8
        return self.transform(frames), label  # [C, T, size, size] float32

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int] | Unreadable:
        """Return ``(clip, label)`` (float ``[C, T, H, W]``, int), or ``Unreadable(path)``."""
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        try:
            if seed is None:
                return self._clip(index)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                return self._clip(index)
        except UnreadableVideo as exc:
            _LOG.debug("skipping unreadable video %s: %s", self.samples[index][0], exc)
            return Unreadable(self.samples[index][0])
