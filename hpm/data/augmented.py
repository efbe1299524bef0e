"""Per-sample seeded augmentation and a collate function that skips unreadable samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from hpm.data.folder import Unreadable

Sample = tuple[torch.Tensor, int]


class SeededTransformDataset(Dataset):
    """Applies a random transform whose randomness depends only on a per-sample seed.

    Indexed with ``(index, sample_seed)`` (as yielded by ``GlobalBatchSampler``), the
    augmentation of a sample is the same in any process and with any number of workers,
    so a resumed run sees the same batches. Indexed with a plain ``int``, the transform
    uses the ambient random state.

    Args:
        base: Data set returning ``(uint8 [C, H, W], label)`` or :class:`Unreadable`.
        transform: Maps a uint8 ``[C, H, W]`` tensor to a float ``[C, H', W']`` tensor.
    """

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Sample | Unreadable:
        """Return ``(image, label)`` (float ``[C, H, W]``, int), or the base's ``Unreadable(path)``."""
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        item = self.base[index]
        if isinstance(item, Unreadable):
            return item
        image, label = item  # [C, H, W] uint8
        if seed is None:
            return self.transform(image), int(label)
        # Only the CPU generator is reseeded (torch.manual_seed would also reset CUDA's),
        # and fork_rng restores it afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            out = self.transform(image)  # [C, H', W'] float32
        return out, int(label)


def collate_skip_none(
    batch: Sequence[Sample | Unreadable],
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the readable samples of a batch and name the unreadable ones.

    Args:
        batch: Samples ``(image [C, H, W], label)``; :class:`Unreadable` marks a file that
            could not be read.

    Returns:
        ``(images [B, C, H, W], labels [B] int64, dropped)`` where ``dropped`` holds the paths
        of the :class:`Unreadable` items, in batch order (``len(dropped)`` counts them). If
        every item is unreadable both tensors have shape ``[0]``.
    """
    dropped = [item.path for item in batch if isinstance(item, Unreadable)]
    items = [item for item in batch if not isinstance(item, Unreadable)]
    if not items:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), dropped
    images = torch.stack([image for image, _ in items])  # [B, C, H, W]
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)  # [B]
    return images, labels, dropped
