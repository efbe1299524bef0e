"""Moving Fashion-MNIST: one or two items that move at constant speed and bounce off the
canvas's edges. A clip's labels are the first item's class (appearance, seen in any frame)
and the direction of its velocity (motion, seen only across frames)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MOTIONS: tuple[str, ...] = (
    "east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast"
)
"""The eight motion classes: direction ``k`` points ``45 * k`` degrees counter-clockwise from east."""
MIN_SIZE = 16
MAX_ITEMS = 2


@dataclass(frozen=True)
class MovingClip:
    """One generated clip.

    Attributes:
        frames: uint8 ``[T, size, size]`` greyscale frames.
        motion: Index into :data:`MOTIONS` of the first item's initial velocity.
        classes: The Fashion-MNIST class of each item, the first item's first.
        sources: The index of each item in its Fashion-MNIST split.
    """

    frames: np.ndarray
    motion: int
    classes: tuple[int, ...]
    sources: tuple[int, ...]


def item_side(size: int) -> int:
    """The side of an item on a canvas of ``size`` pixels: 28 (Fashion-MNIST's own) at 64."""
    return max(1, round(size * 7 / 16))


def scale_items(images: np.ndarray, side: int) -> np.ndarray:
    """Resize uint8 items ``[N, h, w]`` to ``[N, side, side]`` (antialiased bilinear; none at their size)."""
    if images.shape[1:] == (side, side):
        return images
    batch = torch.from_numpy(images).unsqueeze(1).float()  # [N, 1, h, w]
    scaled = F.interpolate(batch, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return scaled.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()  # [N, side, side]


def bounce(start: np.ndarray, velocity: np.ndarray, num_frames: int, span: int) -> np.ndarray:
    """Top-left corners of items moving at constant velocity and reflected at ``0`` and ``span``.

    Args:
        start: float ``[K, 2]`` first corners ``(y, x)``, each in ``[0, span]``.
        velocity: float ``[K, 2]`` pixels per frame ``(dy, dx)``.
        num_frames: Frames ``T``.
        span: The largest corner coordinate (canvas side minus item side).

    Returns:
        int64 ``[K, T, 2]`` corners, each in ``0 .. span``.
    """
    t = np.arange(num_frames, dtype=np.float64)  # [T]
    free = start[:, None, :] + t[None, :, None] * velocity[:, None, :]  # [K, T, 2]
    folded = np.mod(free, 2 * span)  # a triangle wave: up to span, then back down
    return np.rint(span - np.abs(folded - span)).astype(np.int64)


def moving_clip(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, num_frames: int, size: int
) -> MovingClip:
    """Draw one clip.

    Args:
        rng: The clip's own generator.
        images: uint8 ``[N, s, s]`` items, already at :func:`item_side` of ``size``.
        labels: int ``[N]`` their classes.
        num_frames: Frames ``T``.
        size: Canvas side in pixels.

    Returns:
        The clip and its labels.
    """
    side = images.shape[1]
    span = size - side
    count = int(rng.integers(1, MAX_ITEMS + 1))
    sources = rng.integers(0, len(images), size=count)  # [K]
    start = rng.uniform(0, span, size=(count, 2))  # [K, 2] (y, x)
    motion = int(rng.integers(0, len(MOTIONS)))
    angles = np.concatenate([[motion * np.pi / 4], rng.uniform(0, 2 * np.pi, size=count - 1)])  # [K]
    speeds = rng.uniform(size / 32, size / 16, size=count)  # [K] pixels per frame
    velocity = speeds[:, None] * np.stack([-np.sin(angles), np.cos(angles)], axis=1)  # [K, 2], north is -y
    corners = bounce(start, velocity, num_frames, span)  # [K, T, 2]
    frames = np.zeros((num_frames, size, size), dtype=np.uint8)  # [T, S, S]
    offsets = np.arange(side)
    t = np.arange(num_frames)[:, None, None]  # [T, 1, 1]
    for k in range(count):
        rows = (corners[k, :, 0, None] + offsets)[:, :, None]  # [T, s, 1]
        cols = (corners[k, :, 1, None] + offsets)[:, None, :]  # [T, 1, s]
        # [T, s, s]; where items overlap the brighter pixel shows
        frames[t, rows, cols] = np.maximum(frames[t, rows, cols], images[sources[k]][None])
    classes = tuple(int(labels[i]) for i in sources)
    return MovingClip(frames=frames, motion=motion, classes=classes, sources=tuple(int(i) for i in sources))
