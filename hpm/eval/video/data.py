"""Labelled clip splits for evaluation: the ``train`` and ``val`` videos of a clip folder, their
labels of one kind, subsets or few labels, and the deterministic test views.

Label kinds: ``folder`` (the class folders, ``DIR/<split>/<class>/``: the eight motions of Moving
Fashion-MNIST), or a key of each clip's entry in ``DIR/<split>.json`` (``hpm data moving`` writes
``motion`` and ``class``, the first item's Fashion-MNIST class), names from its ``motions`` /
``classes`` lists.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpm.config import Config, DataConfig
from hpm.data import balanced_subset
from hpm.data.labels import LabelCount, labelled_subset
from hpm.data.video import VideoClipDataset, clip_span, open_video
from hpm.errors import DataError
from hpm.eval.data import normalisation
from hpm.eval.video.options import LabelKind, VideoOptions
from hpm.eval.video.views import ClipViews

_LOG = logging.getLogger(__name__)
_NAMES_KEY = {"motion": "motions", "class": "classes"}


@dataclass
class ClipSplit:
    """One split: its videos and their labels of the chosen kind.

    Attributes:
        files: Video paths (video files or frame folders).
        labels: int64 ``[N]`` labels.
        name: ``"train"`` or ``"val"``.
    """

    files: list[str]
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.files)

    def take(self, indices: np.ndarray) -> "ClipSplit":
        """The clips ``indices`` of this split."""
        return ClipSplit([self.files[i] for i in indices], self.labels[indices], self.name)


@dataclass
class VideoEvalData:
    """A labelled train / test pair of clip splits and how the encoder sees them.

    Attributes:
        root: The clip folder.
        kind: The label kind (``folder``, ``motion`` or ``class``).
        train: Memory bank (k-NN) or training split (probe, fine-tune).
        test: The split accuracies are reported on.
        classes: Class names, indexed by label.
        num_frames: Frames per clip; ``stride``: frames between two clip frames.
        img_size: Frame side; ``channels``, ``mean``, ``std``: as the encoder was trained.
        test_clips: Temporal views; ``test_crops``: spatial views per clip.
        square: Whether the videos are square (then every spatial crop is the same).
        labels: The few-label selection (``{"count", "asked", "seed", "of"}``), or None.
    """

    root: Path
    kind: LabelKind
    train: ClipSplit
    test: ClipSplit
    classes: tuple[str, ...]
    num_frames: int
    stride: int
    img_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_clips: int
    test_crops: int
    square: bool
    labels: dict[str, object] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def views(self, split: ClipSplit) -> ClipViews:
        """The deterministic test views of ``split``."""
        return ClipViews(split.files, split.labels, self.num_frames, self.stride, self.img_size, self.channels,
                         self.mean, self.std, self.test_clips, self.test_crops)

    def describe_views(self) -> dict[str, Any]:
        """The view settings, for result files."""
        return {"test_clips": self.test_clips, "test_crops": self.test_crops, "num_views": self.test_clips * self.test_crops,
                "crops_coincide": self.square, "num_frames": self.num_frames, "frame_stride": self.stride}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for result files."""
        return {
            "dataset": "video", "folder": str(self.root), "label": self.kind, "num_train": len(self.train),
            "num_test": len(self.test), "test_split": self.test.name, "num_classes": self.num_classes,
            "classes": list(self.classes), "img_size": self.img_size, "channels": self.channels,
            "mean": list(self.mean), "std": list(self.std), "views": self.describe_views(),
        } | ({"labels": dict(self.labels)} if self.labels is not None else {})


def listed_labels(root: Path, split: str, files: list[str], kind: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ``kind`` label of each file from ``root/<split>.json``, and the kind's names.

    Raises:
        DataError: No such listing, or a clip without that label or not listed.
    """
    listing_file = root / f"{split}.json"
    hint = "leave --label out for the class folders"
    if not listing_file.is_file():
        raise DataError(f"--label {kind} reads each clip's {kind} from {listing_file}, which does not exist; {hint}")
    listing = json.loads(listing_file.read_text())
    by_file = {entry["file"]: entry for entry in listing.get("clips", [])}
    labels = []
    for path in files:
        entry = by_file.get(Path(os.path.relpath(path, root)).as_posix())
        if entry is None or kind not in entry:
            what = "is not listed" if entry is None else f"has no {kind!r}"
            raise DataError(f"--label {kind}: {path} {what} in {listing_file}; {hint}")
        labels.append(int(entry[kind]))
    names = listing.get(_NAMES_KEY[kind]) or [str(i) for i in range(max(labels) + 1)]
    return np.asarray(labels, dtype=np.int64), tuple(names)


def load_split(root: Path, split: str, kind: LabelKind) -> tuple[ClipSplit, tuple[str, ...]]:
    """Every clip of ``root/<split>/<class>/`` with its ``kind`` labels, and the class names."""
    clips = VideoClipDataset(root, split, num_frames=1, stride=1, size=8, train=False)  # the file listing only
    files = [path for path, _ in clips.samples]
    if kind == "folder":
        return ClipSplit(files, clips.labels, split), tuple(clips.classes)
    labels, names = listed_labels(root, split, files, kind)
    return ClipSplit(files, labels, split), names


def _subset(split: ClipSplit, n: int | None, seed: int) -> ClipSplit:
    """A seeded, class-balanced subset of at most ``n`` clips (None: all)."""
    if n is None or n >= len(split):
        return split
    return split.take(balanced_subset(split.labels, n, seed))


def _choose_train(full: ClipSplit, labels: LabelCount | None, subset: int | None, seed: int
                  ) -> tuple[ClipSplit, dict[str, object] | None]:
    """The train split: the few labelled clips (class-balanced, nested) or a subset."""
    if labels is None:
        return _subset(full, subset, seed), None
    n = labels.resolve(len(full))
    chosen = labelled_subset(full.labels, n, seed)
    return full.take(chosen), {"count": n, "asked": str(labels), "seed": seed, "of": len(full)}


def build_video_eval_data(
    cfg: Config, data_dir: str | None, video: VideoOptions, train_subset: int | None = None,
    test_subset: int | None = None, seed: int = 0, labels: LabelCount | None = None,
) -> VideoEvalData:
    """The labelled clip splits of ``data_dir`` (default: the run's ``data.data_dir``).

    Args:
        cfg: The encoder's resolved config (clip shape, stride, channels, normalisation).
        data_dir: A clip folder with ``train/<class>/`` and ``val/<class>/``.
        video: The label kind and the test views.
        train_subset: Class-balanced subset of the train split (None: all); not with ``labels``.
        test_subset: The same for the test split.
        seed: Chooses the subsets and the labelled clips.
        labels: Few labels: only this many train clips keep their label (class-balanced, nested).

    Raises:
        DataError: No clip folder, a missing split, a label kind the data do not have, or one class.
    """
    folder = data_dir or cfg.data.data_dir
    if folder is None:
        raise DataError("a video run is evaluated on a labelled clip folder: pass --data-dir DIR "
                        "(DIR/train/<class>/ and DIR/val/<class>/)")
    root = Path(folder)
    full_train, classes = load_split(root, "train", video.kind)
    full_test, test_classes = load_split(root, "val", video.kind)
    if test_classes != classes:
        raise DataError(f"the {video.kind} classes of {root}/train and {root}/val differ ({list(classes)[:8]} against "
                        f"{list(test_classes)[:8]}); both splits need the same classes")
    if len(np.unique(full_train.labels)) < 2:
        raise DataError(f"the train clips of {root} hold a single {video.kind} label; evaluation needs two or more")
    train, chosen = _choose_train(full_train, labels, train_subset, seed)
    channels = int(cfg.model.in_chans or 3)
    mean, std = normalisation(DataConfig.model_validate({**cfg.data.model_dump(), "data_dir": str(root)}), channels)
    first = open_video(train.files[0])  # a video file or a frame folder
    height, width = first.frames(np.zeros(1, dtype=np.int64), channels).shape[-2:]
    if height == width and video.test_crops > 1:
        _LOG.warning("the videos are square (%d px): the %d spatial crops coincide "
                     "(encoded once, they add nothing over --test-crops 1)", height, video.test_crops)
    span = clip_span(int(cfg.model.num_frames or 1), cfg.data.frame_stride)
    if video.test_clips > 1 and first.length <= span:
        _LOG.warning("the videos are no longer than a clip (%d frames): the %d temporal clips coincide "
                     "(encoded once, they add nothing over --test-clips 1)", span, video.test_clips)
    return VideoEvalData(
        root, video.kind, train, _subset(full_test, test_subset, seed), classes, int(cfg.model.num_frames or 1),
        cfg.data.frame_stride, cfg.model.img_size, channels, mean, std, video.test_clips, video.test_crops,
        height == width, chosen,
    )
