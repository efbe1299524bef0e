"""Which clips the video picture shows: validation clips of the run's video folder, taken as
an evaluation takes them (the centre ``num_frames`` frames, resized and centre-cropped)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from hpm.config import Config
from hpm.data.build import IMAGENET_MEAN, IMAGENET_STD
from hpm.data.folder import Unreadable
from hpm.data.video import VideoClipDataset, video_layout
from hpm.errors import DataError
from hpm.viz.panels.images import default_indices

DEFAULT_CLIPS = 4


def clip_normalisation(cfg: Config, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a video run normalised its clips with: ``data.mean/std`` or the video
    data's defaults (ImageNet's for RGB, 0.5 for one channel)."""
    default = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    mean = tuple(float(v) for v in (cfg.data.mean if cfg.data.mean is not None else default[0]))
    std = tuple(float(v) for v in (cfg.data.std if cfg.data.std is not None else default[1]))
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"data.mean / data.std need {channels} entries (one per channel), got {mean} / {std}")
    return mean, std


def clip_dataset(cfg: Config, data_dir: str | None = None, split: str | None = None) -> VideoClipDataset:
    """The clips of ``data_dir`` (default: the run's ``data.data_dir``) in evaluation form, normalised
    as in training; split ``val`` when the folder has one, else ``train``.

    Raises:
        DataError: No folder, no such split, or no video files.
    """
    root = data_dir if data_dir is not None else cfg.data.data_dir
    if root is None or cfg.model.num_frames is None:
        raise DataError("the video picture needs a video run and its folder of video files (--data-dir DIR)")
    layout = video_layout(root)
    if split is None:
        split = "val" if layout == "classes" and (Path(root) / "val").is_dir() else "train"
    channels = int(cfg.model.in_chans or cfg.data.channels or 3)
    mean, std = clip_normalisation(cfg, channels)
    return VideoClipDataset(
        root, split, num_frames=cfg.model.num_frames, stride=cfg.data.frame_stride, size=cfg.model.img_size,
        train=False, channels=channels, mean=mean, std=std, layout=layout if split == "train" else "classes",
    )


def choose_clips(
    dataset: VideoClipDataset, indices: Sequence[int] | None = None, count: int = DEFAULT_CLIPS
) -> tuple[Tensor, list[str]]:
    """Clips ``indices`` of ``dataset`` (default: ``count`` taken round-robin over the classes).

    Returns:
        ``(clips [N, C, T, H, W], labels)``; a label is the split, index and class.

    Raises:
        DataError: An index out of range or a clip that cannot be decoded.
    """
    chosen = list(indices) if indices is not None else default_indices(dataset.labels, count)
    bad = [i for i in chosen if not 0 <= i < len(dataset)]
    if bad or not chosen:
        raise DataError(f"clip indices {bad or chosen} are not in 0..{len(dataset) - 1} of {dataset.split}")
    clips, labels = [], []
    for index in chosen:
        item = dataset[index]
        if isinstance(item, Unreadable):
            raise DataError(f"cannot decode {item.path}")
        clip, label = item
        clips.append(clip)  # [C, T, H, W]
        name = dataset.classes[label] if dataset.classes else ""
        labels.append(f"{dataset.split} #{index} {name}".rstrip())
    return torch.stack(clips), labels
