"""Reading a video of either kind, a video file (torchcodec) or a folder of frames, by path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from hpm.data.video.decode import VideoFile
from hpm.data.video.frames import FrameFolder
from hpm.data.video.sampling import clip_indices, clip_start


def open_video(path: str | Path) -> VideoFile | FrameFolder:
    """Open a video: a folder is a folder of frames, anything else a video file.

    Both kinds give ``length`` (frames, at least 1) and ``frames(indices, channels)``.

    Raises:
        UnreadableVideo: The video cannot be opened or holds no frame.
        DataError: torchcodec cannot load FFmpeg's libraries (video files).
    """
    return FrameFolder(path) if os.path.isdir(path) else VideoFile(path)


def video_length(path: str | Path) -> int:
    """The number of frames of a video file or frame folder.

    Raises:
        UnreadableVideo: The video cannot be opened or holds no frame.
    """
    return open_video(path).length


def read_frames(path: str | Path, indices: np.ndarray, channels: int = 3) -> torch.Tensor:
    """Decode the frames ``indices`` of a video (seeking to each in a file, reading only those files
    of a frame folder).

    Args:
        path: The video file or frame folder.
        indices: int ``[T]`` frame indices, each below the video's length.
        channels: 1 (luma) or 3 (RGB).

    Returns:
        uint8 ``[T, channels, H, W]``.

    Raises:
        UnreadableVideo: The video cannot be opened or the frames cannot be decoded.
    """
    return open_video(path).frames(indices, channels)


def read_clip(
    path: str | Path,
    num_frames: int,
    stride: int,
    rng: np.random.Generator | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Decode a clip of ``num_frames`` frames ``stride`` apart (see :mod:`hpm.data.video.sampling`).

    Args:
        path: The video file or frame folder.
        num_frames: Frames in the clip (``T``).
        stride: Frames between two clip frames.
        rng: Draws a random start (training); None takes the centre (evaluation).
        channels: 1 (luma) or 3 (RGB).

    Returns:
        uint8 ``[T, channels, H, W]``; a video shorter than the clip repeats its last frame.

    Raises:
        UnreadableVideo: The video cannot be opened, holds no frame or cannot be decoded.
    """
    video = open_video(path)
    start = clip_start(video.length, num_frames, stride, rng)
    indices = clip_indices(video.length, num_frames, stride, start)  # [T]
    return video.frames(indices, channels)
