"""Cluttered backgrounds: smooth coloured noise, grain, and low-contrast fragments of other items.

A background holds no zero pixel and carries item-like shapes, so "foreground" cannot be read
off as "non-zero pixels" or as "any garment edge".
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hpm.data.scenes.sprites import random_tint, scale_item

NOISE_GRID = 4  # cells per side of the smooth colour field
NOISE_AMPLITUDE = 90.0  # peak-to-peak swing of the smooth field, per channel
GRAIN_STD = 6.0  # per-pixel noise
FRAGMENTS = (2, 5)  # fragments per background, inclusive
FRAGMENT_CROP = (10, 20)  # side of the cropped part of a 28 x 28 item, inclusive
FRAGMENT_SCALE = (0.3, 0.7)  # fragment side as a fraction of the scene side
FRAGMENT_ALPHA = (0.15, 0.35)  # opacity of a fragment at full item intensity
VALUE_RANGE = (12, 243)  # backgrounds are clipped into this range: never black or white


def coloured_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field around a random base colour, plus per-pixel grain.

    Args:
        rng: The scene's generator.
        size: Scene side.

    Returns:
        float ``[size, size, 3]``, roughly in [0, 255].
    """
    base = rng.uniform(50.0, 190.0, size=3)  # [3]
    grid = rng.integers(0, 256, size=(NOISE_GRID, NOISE_GRID, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BILINEAR))
    field = (smooth.astype(np.float64) / 255.0 - 0.5) * NOISE_AMPLITUDE  # [S, S, 3]
    grain = rng.normal(0.0, GRAIN_STD, size=(size, size, 3))  # [S, S, 3]
    return base + field + grain


def blend_fragment(
    canvas: np.ndarray, rng: np.random.Generator, images: np.ndarray
) -> int:
    """Blend a tinted, scaled crop of a random item into ``canvas`` in place, at low opacity.

    Args:
        canvas: float ``[S, S, 3]`` background being built.
        rng: The scene's generator.
        images: uint8 ``[N, 28, 28]`` items of the scene's split.

    Returns:
        The index in ``images`` of the item the fragment comes from.
    """
    size = canvas.shape[0]
    source = int(rng.integers(len(images)))
    item_side = images.shape[1]
    crop = int(rng.integers(FRAGMENT_CROP[0], FRAGMENT_CROP[1] + 1))
    u, v = (int(c) for c in rng.integers(0, item_side - crop + 1, size=2))
    side = int(rng.integers(round(FRAGMENT_SCALE[0] * size), round(FRAGMENT_SCALE[1] * size) + 1))
    top, left = (int(c) for c in rng.integers(0, size - side + 1, size=2))
    colour = random_tint(rng) * 255.0  # [3]
    alpha = rng.uniform(*FRAGMENT_ALPHA)
    sprite = scale_item(images[source], side, box=(u, v, u + crop, v + crop))  # [s, s] uint8
    weight = (alpha * sprite.astype(np.float64) / 255.0)[:, :, None]  # [s, s, 1]
    region = canvas[top : top + side, left : left + side]  # [s, s, 3] view
    region *= 1.0 - weight
    region += weight * colour
    return source


def cluttered_background(
    rng: np.random.Generator, images: np.ndarray, size: int
) -> tuple[np.ndarray, list[int]]:
    """A background of coloured noise and low-contrast fragments of other items.

    Args:
        rng: The scene's generator.
        images: uint8 ``[N, 28, 28]`` items of the scene's split (fragments come from them).
        size: Scene side.

    Returns:
        ``(background, fragment_indices)``: uint8 ``[size, size, 3]`` RGB with every value in
        ``VALUE_RANGE``, and the indices in ``images`` of the fragments' items.
    """
    canvas = coloured_noise(rng, size)  # [S, S, 3] float
    count = int(rng.integers(FRAGMENTS[0], FRAGMENTS[1] + 1))
    fragments = [blend_fragment(canvas, rng, images) for _ in range(count)]
    background = np.clip(np.rint(canvas), *VALUE_RANGE).astype(np.uint8)  # [S, S, 3]
    return background, fragments
