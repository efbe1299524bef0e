"""Shared helpers: whether torchcodec can load FFmpeg, and small video files written to tmp_path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from hpm.data.video.encode import write_video
from hpm.errors import DataError


def _ffmpeg_works() -> bool:
    """Whether a one-frame video can be written here (torchcodec finds FFmpeg's libraries)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            write_video(Path(folder) / "probe.mkv", torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
        except DataError:
            return False
    return True


HAVE_FFMPEG = _ffmpeg_works()
needs_ffmpeg = pytest.mark.skipif(
    not HAVE_FFMPEG, reason="torchcodec cannot load FFmpeg: apt-get install ffmpeg"
)


def index_frames(num_frames: int, size: int = 16, channels: int = 1, step: int = 10) -> torch.Tensor:
    """uint8 ``[T, C, size, size]`` frames whose every pixel of frame ``t`` is ``step * t``."""
    values = (torch.arange(num_frames) * step).to(torch.uint8)  # [T]
    return values.view(-1, 1, 1, 1).expand(-1, channels, size, size).contiguous()
