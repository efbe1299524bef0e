"""Open ``--data-dir``: an image folder, or a pack of shards written by ``hpm data pack``."""

from __future__ import annotations

from pathlib import Path

from hpm.data.folder import ImageFolderDataset
from hpm.data.shards import ShardDataset, is_shard_dir


def open_image_dataset(root: str | Path, split: str = "train", channels: int = 3) -> ImageFolderDataset | ShardDataset:
    """The labelled images of ``root/<split>``: a :class:`ShardDataset` if ``root`` holds a shard
    index, else an :class:`ImageFolderDataset`; both give ``(uint8 [C, H, W], label)`` in the
    folder's sample order.

    Raises:
        DataError: The folder or pack is missing, empty, incomplete or damaged.
    """
    if is_shard_dir(root):
        return ShardDataset(root, split, channels)
    return ImageFolderDataset(root, split, channels)
