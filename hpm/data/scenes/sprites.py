"""Fashion-MNIST items as sprites: a greyscale item scaled to a side, and a random tint."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image


def random_tint(
    rng: np.random.Generator,
    saturation: tuple[float, float] = (0.45, 1.0),
    value: tuple[float, float] = (0.55, 1.0),
) -> np.ndarray:
    """A colour of uniform hue, saturation and value drawn from the given ranges.

    Args:
        rng: The scene's generator.
        saturation: Range of the HSV saturation.
        value: Range of the HSV value (brightness).

    Returns:
        ``[3]`` float RGB in [0, 1].
    """
    hue = rng.random()
    sat = rng.uniform(*saturation)
    val = rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val))


def scale_item(
    image: np.ndarray, side: int, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Resize a greyscale item (or the ``box`` region of it) to ``side`` x ``side``, bilinear.

    Args:
        image: uint8 ``[28, 28]`` Fashion-MNIST item.
        side: Output side in pixels.
        box: Optional ``(left, upper, right, lower)`` crop of ``image`` to scale instead.

    Returns:
        uint8 ``[side, side]``.
    """
    resized = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized)


def paste(sprite: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Place a square sprite on an empty ``size`` x ``size`` canvas (it must fit).

    Args:
        sprite: ``[s, s]`` array.
        top: Row of the sprite's first row on the canvas.
        left: Column of the sprite's first column on the canvas.
        size: Canvas side.

    Returns:
        ``[size, size]`` array of the sprite's dtype, zero outside the sprite.
    """
    side = sprite.shape[0]
    canvas = np.zeros((size, size), dtype=sprite.dtype)  # [S, S]
    canvas[top : top + side, left : left + side] = sprite
    return canvas
