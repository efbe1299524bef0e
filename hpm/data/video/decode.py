"""Reading frames of a video file with torchcodec (FFmpeg), by index and with seeking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hpm.data.video.sampling import clip_indices, clip_start
from hpm.errors import DataError

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".webm", ".avi", ".mkv"})
_GREY_WEIGHTS = (299, 587, 114)  # ITU-R 601 luma in thousandths, as PIL's "L" conversion


class UnreadableVideo(DataError):
    """A video file that is missing, truncated, or that FFmpeg cannot decode."""


def ffmpeg_error(exc: BaseException) -> DataError | None:
    """The error to raise when ``exc`` says that torchcodec cannot load FFmpeg's libraries."""
    if isinstance(exc, ImportError) or "Could not load libtorchcodec" in str(exc):
        return DataError(
            "torchcodec cannot load FFmpeg's libraries; install FFmpeg 4-9 "
            "(e.g. `apt-get install ffmpeg`) and a torchcodec built for this torch"
        )
    return None


def _decoder(path: str | Path):  # -> torchcodec.decoders.VideoDecoder
    """Open ``path`` for decoding."""
    try:
        from torchcodec.decoders import VideoDecoder

        # "exact" scans the packets once (no decoding) so that frame i is frame i.
        return VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
    except Exception as exc:  # noqa: BLE001 - FFmpeg reports every failure as RuntimeError
        raise ffmpeg_error(exc) or UnreadableVideo(f"cannot open video {path}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """The last line of FFmpeg's message (torchcodec prefixes the C++ source location)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.rsplit(", ", 1)[-1]


def to_channels(frames: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB frames ``[T, 3, H, W]`` uint8 as ``channels`` 1 (luma, exact for grey) or 3."""
    if channels == 3:
        return frames
    if channels != 1:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    weights = torch.tensor(_GREY_WEIGHTS, dtype=torch.int32).view(1, 3, 1, 1)
    luma = (frames.to(torch.int32) * weights).sum(dim=1, keepdim=True)  # [T, 1, H, W]
    return ((luma + 500) // 1000).to(torch.uint8)


def _length(decoder, path: str | Path) -> int:
    """The frame count of an opened video (at least 1)."""
    length = int(decoder.metadata.num_frames or 0)
    if length < 1:
        raise UnreadableVideo(f"video {path} holds no frames")
    return length


def _frames_at(decoder, path: str | Path, indices: np.ndarray, channels: int) -> torch.Tensor:
    """Decode frames ``indices`` of an opened video as uint8 ``[T, channels, H, W]``."""
    try:
        frames = decoder.get_frames_at([int(i) for i in indices]).data  # [T, 3, H, W] uint8
    except Exception as exc:  # noqa: BLE001
        raise UnreadableVideo(f"cannot decode frames of video {path}: {_reason(exc)}") from None
    return to_channels(frames, channels)


def video_length(path: str | Path) -> int:
    """The number of frames of a video file.

    Raises:
        UnreadableVideo: The file cannot be opened or holds no frame.
    """
    return _length(_decoder(path), path)


def read_frames(path: str | Path, indices: np.ndarray, channels: int = 3) -> torch.Tensor:
    """Decode the frames ``indices`` of a video file (seeking to each, not decoding all).

    Args:
        path: The video file.
        indices: int ``[T]`` frame indices, each below the video's length.
        channels: 1 (luma) or 3 (RGB).

    Returns:
        uint8 ``[T, channels, H, W]``.

    Raises:
        UnreadableVideo: The file cannot be opened or the frames cannot be decoded.
    """
    return _frames_at(_decoder(path), path, indices, channels)


def read_clip(
    path: str | Path,
    num_frames: int,
    stride: int,
    rng: np.random.Generator | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Decode a clip of ``num_frames`` frames ``stride`` apart (see :mod:`hpm.data.video.sampling`).

    Args:
        path: The video file.
        num_frames: Frames in the clip (``T``).
        stride: Frames between two clip frames.
        rng: Draws a random start (training); None takes the centre (evaluation).
        channels: 1 (luma) or 3 (RGB).

    Returns:
        uint8 ``[T, channels, H, W]``.

    Raises:
        UnreadableVideo: The file cannot be opened, holds no frame or cannot be decoded.
    """
    decoder = _decoder(path)
    length = _length(decoder, path)
    indices = clip_indices(length, num_frames, stride, clip_start(length, num_frames, stride, rng))  # [T]
    return _frames_at(decoder, path, indices, channels)
