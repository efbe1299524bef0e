"""One scene: 1-4 tinted, scaled Fashion-MNIST items stacked on a cluttered background."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpm.data.scenes.backgrounds import cluttered_background
from hpm.data.scenes.occlusion import class_index_map, visible_masks
from hpm.data.scenes.sprites import paste, random_tint, scale_item

ITEMS = (1, 4)  # items per scene, inclusive
ITEM_SCALE = (0.35, 0.7)  # item side (its 28 x 28 frame) as a fraction of the scene side
MASK_THRESHOLD = 32  # an item's own pixels: scaled intensity above this (of 255)
SHADE = 0.3  # brightness of an item's faintest pixel relative to its tint


@dataclass(frozen=True)
class Scene:
    """A composed scene and its ground truth.

    Attributes:
        image: uint8 ``[S, S, 3]`` RGB.
        index_map: uint8 ``[S, S]``: 0 is background, else the visible item's class + 1.
        visible: bool ``[K, S, S]``: each placed item's visible pixels, in paint order (an item
            fully covered by later ones is all False).
        category_ids: ``K`` class + 1 of each placed item.
        source_indices: ``K`` index of each placed item in its Fashion-MNIST split.
        fragment_indices: Indices in the same split of the background fragments' items.
    """

    image: np.ndarray
    index_map: np.ndarray
    visible: np.ndarray
    category_ids: tuple[int, ...]
    source_indices: tuple[int, ...]
    fragment_indices: tuple[int, ...]


def place_item(
    rng: np.random.Generator, item: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scale an item to a random side, put it at a random place inside the scene, and tint it.

    Args:
        rng: The scene's generator.
        item: uint8 ``[28, 28]`` Fashion-MNIST item.
        size: Scene side.

    Returns:
        ``(mask, rgb)``: bool ``[size, size]`` (the item's own pixels) and float
        ``[size, size, 3]`` (its colours, meaningful where ``mask``).
    """
    side = int(rng.integers(round(ITEM_SCALE[0] * size), round(ITEM_SCALE[1] * size) + 1))
    top, left = (int(c) for c in rng.integers(0, size - side + 1, size=2))
    tint = random_tint(rng) * 255.0  # [3]
    intensity = paste(scale_item(item, side), top, left, size)  # [S, S] uint8
    mask = intensity > MASK_THRESHOLD  # [S, S]
    shade = SHADE + (1.0 - SHADE) * intensity.astype(np.float64) / 255.0  # [S, S]
    return mask, shade[:, :, None] * tint  # [S, S], [S, S, 3]


def compose_scene(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, size: int
) -> Scene:
    """Compose one scene from random items of a Fashion-MNIST split.

    Later items cover earlier ones; an item's ground truth is its own pixels above
    ``MASK_THRESHOLD`` minus what later items cover.

    Args:
        rng: The scene's own generator (all randomness of the scene comes from it).
        images: uint8 ``[N, 28, 28]`` items of the split.
        labels: int ``[N]`` their classes in 0..9.
        size: Scene side in pixels.

    Returns:
        The scene.
    """
    background, fragments = cluttered_background(rng, images, size)  # [S, S, 3] uint8
    count = int(rng.integers(ITEMS[0], ITEMS[1] + 1))
    sources = [int(j) for j in rng.integers(0, len(images), size=count)]
    placed = [place_item(rng, images[j], size) for j in sources]
    masks = np.stack([mask for mask, _ in placed])  # [K, S, S]
    visible = visible_masks(masks)  # [K, S, S]
    image = background.astype(np.float64)  # [S, S, 3]
    for (_, rgb), shown in zip(placed, visible):
        image[shown] = rgb[shown]
    category_ids = tuple(int(labels[j]) + 1 for j in sources)
    return Scene(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        index_map=class_index_map(visible, np.array(category_ids)),
        visible=visible,
        category_ids=category_ids,
        source_indices=tuple(sources),
        fragment_indices=tuple(fragments),
    )
