"""``hpm data moving``: write Moving Fashion-MNIST as lossless video files plus label lists.

``OUT/{train,val}/<motion>/clip_NNNNNN.mkv`` (FFV1, greyscale; the folders are the eight
directions of :data:`~hpm.data.video.moving.MOTIONS`, so :class:`VideoClipDataset` reads the
temporal task) and ``OUT/{train,val}.json`` (each clip's file, motion and item classes).
Training clips take their items from Fashion-MNIST's train split, validation clips from its
test split. Clip ``i`` of a split is drawn from its own generator seeded by ``(seed, split, i)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from hpm.data.generator_out import check_generator_out, remove_outputs
from hpm.data.video.encode import VIDEO_SUFFIX, write_video
from hpm.data.video.moving import MIN_SIZE, MOTIONS, item_side, moving_clip, scale_items
from hpm.errors import ConfigError

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
SOURCE_SPLIT: dict[Split, Literal["train", "test"]] = {"train": "train", "val": "test"}
_SPLIT_KEY: dict[Split, int] = {"train": 0, "val": 1}


@dataclass(frozen=True)
class MovingOptions:
    """What to generate.

    Attributes:
        num_train: Training clips (items from Fashion-MNIST's train split).
        num_val: Validation clips (items from its test split).
        frames: Frames per clip.
        size: Canvas side in pixels.
        seed: Seeds every clip (with its split and index).
        fps: Frames per second recorded in the files.
    """

    num_train: int = 5_000
    num_val: int = 1_000
    frames: int = 16
    size: int = 32
    seed: int = 0
    fps: int = 8

    def __post_init__(self) -> None:
        if self.num_train < 0 or self.num_val < 0 or self.num_train + self.num_val == 0:
            raise ConfigError(
                f"--num-train ({self.num_train}) and --num-val ({self.num_val}) must be >= 0 and not both 0"
            )
        if self.frames < 2:
            raise ConfigError(f"--frames must be at least 2 (motion needs two frames), got {self.frames}")
        if self.size < MIN_SIZE:
            raise ConfigError(f"--size must be at least {MIN_SIZE} pixels, got {self.size}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")

    def count(self, split: Split) -> int:
        """Clips of ``split``."""
        return self.num_train if split == "train" else self.num_val


@dataclass
class MovingSummary:
    """What was written: clips per split."""

    out: Path
    clips: dict[str, int] = field(default_factory=dict)


def clip_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    """The generator of clip ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_KEY[split], index])


def clip_file(split: Split, motion: int, index: int) -> str:
    """The path of a clip relative to ``OUT``: ``<split>/<motion>/clip_NNNNNN.mkv``."""
    return f"{split}/{MOTIONS[motion]}/clip_{index:06d}{VIDEO_SUFFIX}"


def write_split(
    out: Path, split: Split, options: MovingOptions, images: np.ndarray, labels: np.ndarray, progress: bool
) -> int:
    """Write one split's clips and its ``<split>.json``.

    Args:
        out: The data set's root folder.
        split: ``"train"`` or ``"val"``.
        options: What to generate.
        images: uint8 ``[N, 28, 28]`` items of the split's Fashion-MNIST source.
        labels: int ``[N]`` their classes.
        progress: Show a progress bar.

    Returns:
        The number of clips written.
    """
    items = scale_items(images, item_side(options.size))  # [N, s, s] uint8
    for name in MOTIONS:
        (out / split / name).mkdir(parents=True, exist_ok=True)
    clips = []
    count = options.count(split)
    for index in tqdm(range(count), desc=f"moving {split}", unit="clip", disable=not progress):
        clip = moving_clip(clip_rng(options.seed, split, index), items, labels, options.frames, options.size)
        file = clip_file(split, clip.motion, index)
        write_video(out / file, torch.from_numpy(clip.frames).unsqueeze(1), fps=options.fps)  # [T, 1, S, S]
        clips.append({
            "file": file,
            "motion": clip.motion,
            "motion_name": MOTIONS[clip.motion],
            "class": clip.classes[0],
            "class_name": FASHION_MNIST_CLASSES[clip.classes[0]],
            "classes": list(clip.classes),
            "sources": list(clip.sources),
        })
    info = {"source": f"fashion-mnist {SOURCE_SPLIT[split]}", **asdict(options)}
    listing = {"info": info, "motions": list(MOTIONS), "classes": list(FASHION_MNIST_CLASSES), "clips": clips}
    (out / f"{split}.json").write_text(json.dumps(listing, indent=1) + "\n")
    return count


def write_moving(
    out: str | Path,
    options: MovingOptions,
    root: str | Path = FASHION_MNIST_ROOT,
    overwrite: bool = False,
    progress: bool = True,
) -> MovingSummary:
    """Write the Moving Fashion-MNIST data set (see the module docstring for the layout).

    Args:
        out: Output folder; created, or refused when it holds anything unless ``overwrite``.
        options: What to generate.
        root: Folder of Fashion-MNIST's gzipped IDX files.
        overwrite: Replace the clips of an existing data set in ``out``.
        progress: Show progress bars.

    Returns:
        Clips written per split.

    Raises:
        ConfigError: ``out`` is not empty (without ``overwrite``) or not a folder.
        DataError: Fashion-MNIST is missing or unreadable, or FFmpeg cannot be loaded.
    """
    out = Path(out)
    check_generator_out(out, overwrite, "clips")
    splits = [split for split in SPLITS if options.count(split) > 0]
    sources = {split: load_fashion_mnist(root, SOURCE_SPLIT[split]) for split in splits}
    remove_outputs(p for split in SPLITS for p in (out / split, out / f"{split}.json"))
    summary = MovingSummary(out=out)
    for split in splits:
        images, labels = sources[split]
        summary.clips[split] = write_split(out, split, options, images, labels, progress)
    return summary
