"""Video files opened with torchcodec (FFmpeg): their frame count, and their frames by index, seeking."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import torch

from hpm.errors import DataError

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".webm", ".avi", ".mkv"})
_GREY_WEIGHTS = (299, 587, 114)  # ITU-R 601 luma in thousandths, as PIL's "L" conversion
# torchcodec prefixes FFmpeg's message with the C++ function and source line: "fn, /path/file.cpp:41, "
_SOURCE_PREFIX = re.compile(r"^\w+, \S+:\d+, ")
# torchcodec's wording when a file has streams but none FFmpeg can decode as video
_NO_VIDEO_STREAM = "best video stream is unknown"


class UnreadableVideo(DataError):
    """A video that is missing, truncated, or that cannot be decoded (a file FFmpeg cannot decode,
    a folder of frames with an unreadable frame or frames of two sizes)."""


def ffmpeg_error(exc: BaseException) -> DataError | None:
    """The error to raise when ``exc`` says that torchcodec cannot load FFmpeg's libraries."""
    if isinstance(exc, ImportError) or "Could not load libtorchcodec" in str(exc):
        return DataError(
            "torchcodec cannot load FFmpeg's libraries; install FFmpeg 4-9 "
            "(e.g. `apt-get install ffmpeg`) and a torchcodec built for this torch"
        )
    return None


def _reason(exc: Exception) -> str:
    """FFmpeg's message in one line, without torchcodec's source location or bug-report advice."""
    text = str(exc).strip()
    if _NO_VIDEO_STREAM in text:
        return "no video stream that this FFmpeg can decode (an audio-only file, or a codec it lacks)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return _SOURCE_PREFIX.sub("", first)


def _check_regular_file(path: str | Path) -> None:
    """Refuse what is not a regular file: FFmpeg would wait forever on a named pipe."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UnreadableVideo(f"cannot open video {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UnreadableVideo(f"video {path} is not a regular file (a pipe, socket or device); remove it or "
                              "replace it by the video file")


def _decoder(path: str | Path):  # -> torchcodec.decoders.VideoDecoder
    """Open ``path`` for decoding."""
    _check_regular_file(path)
    try:
        from torchcodec.decoders import VideoDecoder

        # "exact" scans the packets once (no decoding) so that frame i is frame i.
        return VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
    except Exception as exc:  # noqa: BLE001 - FFmpeg reports every failure as RuntimeError
        raise ffmpeg_error(exc) or UnreadableVideo(
            f"cannot open video {path}: {_reason(exc)}; re-encode it (e.g. to H.264) or remove it"
        ) from None


def to_channels(frames: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB frames ``[T, 3, H, W]`` uint8 as ``channels`` 1 (luma, exact for grey) or 3."""
    if channels == 3:
        return frames
    if channels != 1:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    weights = torch.tensor(_GREY_WEIGHTS, dtype=torch.int32).view(1, 3, 1, 1)
    luma = (frames.to(torch.int32) * weights).sum(dim=1, keepdim=True)  # [T, 1, H, W]
    return ((luma + 500) // 1000).to(torch.uint8)


class VideoFile:
    """A video file opened for decoding: its frame count, and any of its frames by index.

    Args:
        path: The video file.

    Raises:
        UnreadableVideo: The file is missing, not a regular file, not a video FFmpeg can open,
            has no video stream FFmpeg can decode, or holds no frame.
        DataError: torchcodec cannot load FFmpeg's libraries.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._decoder = _decoder(path)
        self.length = int(self._decoder.metadata.num_frames or 0)
        if self.length < 1:
            raise UnreadableVideo(f"video {path} holds no frames; remove it")

    def frames(self, indices: np.ndarray, channels: int = 3) -> torch.Tensor:
        """Decode frames ``indices`` (int ``[T]``, each below ``length``) as uint8 ``[T, channels, H, W]``.

        Raises:
            UnreadableVideo: FFmpeg cannot decode one of the frames.
        """
        try:
            frames = self._decoder.get_frames_at([int(i) for i in indices]).data  # [T, 3, H, W] uint8
        except Exception as exc:  # noqa: BLE001
            raise UnreadableVideo(
                f"cannot decode frames of video {self.path}: {_reason(exc)}; it may be corrupt: re-encode or remove it"
            ) from None
        return to_channels(frames, channels)
