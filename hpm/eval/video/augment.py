"""Fine-tuning clips: a random start, one random resized crop and (with ``hflip``) one flip for
all frames of a clip, drawn from torch's generator (restored on resume, seeded per worker)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from hpm.data.folder import Unreadable
from hpm.data.video import UnreadableVideo, read_clip

_LOG = logging.getLogger(__name__)


def train_clip_transform(
    size: int, crop_scale: Sequence[float], hflip: float, mean: Sequence[float], std: Sequence[float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``[T, C, H, W]`` -> normalised float ``[C, T, size, size]``: one random resized crop
    and a flip with probability ``hflip`` for the whole clip."""
    steps: list[Callable] = [v2.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=InterpolationMode.BICUBIC,
                                                  antialias=True)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    pipeline = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def transform(frames: torch.Tensor) -> torch.Tensor:
        clip = pipeline(tv_tensors.Video(frames))  # [T, C, size, size]
        return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()  # [C, T, size, size]

    return transform


class TrainClips(Dataset):
    """Labelled training clips: item ``i`` is ``(clip [C, T, size, size], label)`` from a random
    start of video ``i`` under ``transform``, or :class:`~hpm.data.folder.Unreadable`.

    Args:
        files: The video files.
        labels: int ``[N]`` their labels.
        num_frames: Frames per clip.
        stride: Frames between two clip frames.
        channels: 1 (luma) or 3 (RGB).
        transform: :func:`train_clip_transform`.
    """

    def __init__(self, files: Sequence[str], labels: np.ndarray, num_frames: int, stride: int, channels: int,
                 transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.files, self.labels = list(files), np.asarray(labels, dtype=np.int64)
        self.num_frames, self.stride, self.channels, self.transform = num_frames, stride, channels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))  # the clip's start
        try:
            frames = read_clip(self.files[index], self.num_frames, self.stride, rng, self.channels)  # [T, C, H, W]
        except UnreadableVideo as exc:
            _LOG.debug("skipping unreadable video %s: %s", self.files[index], exc)
            return Unreadable(self.files[index])
        return self.transform(frames), int(self.labels[index])
