"""Occlusion of stacked items: each item's visible pixels and the scene's class index map."""

from __future__ import annotations

import numpy as np


def visible_masks(masks: np.ndarray) -> np.ndarray:
    """Each item's pixels minus those that later (upper) items cover.

    Args:
        masks: bool ``[K, H, W]``, the items' own pixels in paint order (the last is on top).

    Returns:
        bool ``[K, H, W]``, pairwise disjoint; an item fully covered is all False.
    """
    covered = np.zeros_like(masks)  # [K, H, W]
    if len(masks) > 1:
        above_or_self = np.logical_or.accumulate(masks[::-1], axis=0)[::-1]  # [K, H, W], union of masks[k:]
        covered[:-1] = above_or_self[1:]
    return masks & ~covered


def class_index_map(visible: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
    """The index map of disjoint visible masks: 0 where no item shows, else its category id.

    Args:
        visible: bool ``[K, H, W]``, pairwise disjoint (see :func:`visible_masks`).
        category_ids: int ``[K]`` in 1..255.

    Returns:
        uint8 ``[H, W]``.
    """
    ids = np.asarray(category_ids, dtype=np.uint8)[:, None, None]  # [K, 1, 1]
    return (visible * ids).sum(axis=0, dtype=np.uint8)  # [H, W]
