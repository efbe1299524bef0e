"""Writing frames as a lossless video file with torchcodec (FFmpeg's FFV1 codec in Matroska)."""

from __future__ import annotations

from pathlib import Path

import torch

from hpm.data.video.decode import ffmpeg_error
from hpm.errors import DataError

VIDEO_SUFFIX = ".mkv"
_PIXEL_FORMAT = {1: "gray", 3: "bgr0"}  # FFV1's lossless 8-bit formats for grey and RGB


def write_video(path: str | Path, frames: torch.Tensor, fps: int = 8) -> None:
    """Encode frames losslessly (FFV1): decoding the file gives back exactly these frames, and
    the same frames give the same bytes.

    Args:
        path: The ``.mkv`` file to write.
        frames: uint8 ``[T, C, H, W]`` with C 1 (stored as grey) or 3 (RGB).
        fps: Frames per second recorded in the file.

    Raises:
        DataError: The frames are not uint8 ``[T, 1|3, H, W]`` or torchcodec cannot load FFmpeg.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] not in _PIXEL_FORMAT:
        raise DataError(f"frames must be uint8 [T, 1|3, H, W], got {frames.dtype} {tuple(frames.shape)}")
    channels = int(frames.shape[1])
    rgb = frames.expand(-1, 3, -1, -1).contiguous() if channels == 1 else frames  # [T, 3, H, W]
    try:
        from torchcodec.encoders import VideoEncoder

        encoder = VideoEncoder(rgb, frame_rate=fps)
        # bitexact: no random segment id or library version in the file, so equal frames give equal
        # bytes; g=1: every frame a keyframe, so a clip decodes only its own frames (FFV1 is intra-only
        # anyway: the file is as large, and a strided 16-frame clip of a long video decodes 3-4x faster)
        encoder.to_file(str(path), codec="ffv1", pixel_format=_PIXEL_FORMAT[channels],
                        extra_options={"fflags": "+bitexact", "g": "1"})
    except Exception as exc:  # noqa: BLE001
        missing = ffmpeg_error(exc)
        if missing is None:
            raise
        raise missing from None
