"""Which frames a clip takes: ``T`` frames at a stride, from a random start (training) or the
centre (evaluation), as VideoMAE samples Kinetics (16 x 4) and Something-Something (16 x 2)."""

from __future__ import annotations

import numpy as np

from hpm.errors import ConfigError


def clip_span(num_frames: int, stride: int) -> int:
    """How many frames of the video a clip of ``num_frames`` at ``stride`` covers."""
    if num_frames < 1 or stride < 1:
        raise ConfigError(f"a clip needs num_frames >= 1 and stride >= 1, got {num_frames} and {stride}")
    return (num_frames - 1) * stride + 1


def clip_start(length: int, num_frames: int, stride: int, rng: np.random.Generator | None = None) -> int:
    """The first frame of a clip in a video of ``length`` frames.

    Args:
        length: Frames in the video.
        num_frames: Frames in the clip.
        stride: Frames between two clip frames.
        rng: Draws a uniform start among those that fit (training); None takes the centre
            (evaluation).

    Returns:
        The start index; 0 when the clip does not fit in the video.
    """
    last_start = max(length - clip_span(num_frames, stride), 0)
    if rng is None:
        return last_start // 2
    return int(rng.integers(0, last_start + 1))


def clip_indices(length: int, num_frames: int, stride: int, start: int) -> np.ndarray:
    """The frame indices of a clip, ``start + stride * arange(num_frames)``.

    A clip longer than the video repeats its last frame, as VideoMAE pads short videos.

    Args:
        length: Frames in the video (at least 1).
        num_frames: Frames in the clip.
        stride: Frames between two clip frames.
        start: The first frame.

    Returns:
        int64 ``[num_frames]`` indices in ``0 .. length - 1``.
    """
    clip_span(num_frames, stride)
    if length < 1:
        raise ConfigError(f"a video needs at least one frame, got {length}")
    indices = start + stride * np.arange(num_frames, dtype=np.int64)  # [T]
    return np.minimum(indices, length - 1)
