"""VideoMAE's multi-view testing: ``test_clips`` temporal clips evenly spread over a video times
``test_crops`` spatial crops (left / centre / right along the long side), all deterministic.

A video's clip ``i`` of ``n`` starts at ``int(i * last / (n - 1))`` where ``last`` is the last
start at which the clip fits (one clip: the centre, as :func:`~hpm.data.video.clip_start`); the
frames are resized so that the short side is ``size`` and crop ``j`` of ``m`` starts at
``int(j * (long - size) / (m - 1))`` along the long side (one crop: the centre, as a centre crop).
For square videos every crop is the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from hpm.data.folder import Unreadable
from hpm.data.video import UnreadableVideo, clip_indices, clip_span, open_video

_LOG = logging.getLogger(__name__)


def clip_starts(length: int, num_frames: int, stride: int, test_clips: int) -> list[int]:
    """First frames of the ``test_clips`` temporal views of a video of ``length`` frames."""
    last = max(length - clip_span(num_frames, stride), 0)
    if test_clips == 1:
        return [last // 2]
    return [int(i * last / (test_clips - 1)) for i in range(test_clips)]


def crop_offsets(long: int, size: int, test_crops: int) -> list[int]:
    """Offsets along the long side (``long`` px after the resize) of the ``test_crops`` crops."""
    if test_crops == 1:
        return [int(round((long - size) / 2.0))]
    return [int(j * (long - size) / (test_crops - 1)) for j in range(test_crops)]


def crop_views(frames: torch.Tensor, size: int, test_crops: int) -> list[torch.Tensor]:
    """uint8 ``[T, C, H, W]`` -> ``test_crops`` uint8 ``[T, C, size, size]``: the short side
    resized to ``size`` (bicubic, antialiased), then crops along the long side."""
    video = TF.resize(tv_tensors.Video(frames), [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    h, w = video.shape[-2:]  # one of them is ``size``
    out = []
    for offset in crop_offsets(max(h, w), size, test_crops):
        top, left = (offset, int(round((w - size) / 2.0))) if h > w else (int(round((h - size) / 2.0)), offset)
        out.append(TF.crop(video, top, left, size, size).as_subclass(torch.Tensor))
    return out


class ClipViews(Dataset):
    """The test views of labelled videos: item ``i`` is ``(views, label)`` with float
    ``[V, C, T, size, size]`` views (``V = test_clips * test_crops``, clip-major), normalised,
    or :class:`~hpm.data.folder.Unreadable` for a file that cannot be decoded.

    Args:
        files: The video files.
        labels: int ``[N]`` their labels.
        num_frames: Frames per clip (the encoder's ``num_frames``).
        stride: Frames between two clip frames (the run's ``data.frame_stride``).
        size: Frame side the encoder takes.
        channels: 1 (luma) or 3 (RGB).
        mean: Per-channel mean the encoder was trained with.
        std: Per-channel standard deviation.
        test_clips: Temporal views per video.
        test_crops: Spatial views per clip.
    """

    def __init__(
        self, files: Sequence[str], labels: np.ndarray, num_frames: int, stride: int, size: int, channels: int,
        mean: Sequence[float], std: Sequence[float], test_clips: int = 2, test_crops: int = 1,
    ) -> None:
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)  # [N]
        self.num_frames, self.stride, self.size, self.channels = num_frames, stride, size, channels
        self.mean, self.std = list(mean), list(std)
        self.test_clips, self.test_crops = test_clips, test_crops

    def __len__(self) -> int:
        return len(self.files)

    def views(self, index: int) -> torch.Tensor:
        """The normalised views of video ``index``: float ``[V, C, T, size, size]``."""
        video = open_video(self.files[index])  # a video file or a frame folder
        starts = clip_starts(video.length, self.num_frames, self.stride, self.test_clips)
        indices = np.concatenate([clip_indices(video.length, self.num_frames, self.stride, s) for s in starts])
        frames = video.frames(indices, self.channels)  # [test_clips * T, C, H, W] uint8
        out = []
        for clip in frames.split(self.num_frames):  # [T, C, H, W] each
            out += crop_views(clip, self.size, self.test_crops)
        views = torch.stack(out)  # [V, T, C, size, size] uint8
        views = TF.to_dtype(views, torch.float32, scale=True)
        views = TF.normalize(views.flatten(0, 1), self.mean, self.std).view_as(views)
        return views.permute(0, 2, 1, 3, 4).contiguous()  # [V, C, T, size, size]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        try:
            return self.views(index), int(self.labels[index])
        except UnreadableVideo as exc:
            _LOG.debug("skipping unreadable video %s: %s", self.files[index], exc)
            return Unreadable(self.files[index])
