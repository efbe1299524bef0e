"""Seeded per-sample augmentation and the collate function that skips (and names) unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hpm.data.augmented import SeededTransformDataset, collate_skip_none
from hpm.data.fashion_mnist import ArrayImageDataset
from hpm.data.folder import ImageFolderDataset, Unreadable
from hpm.data.sampler import GlobalBatchSampler
from hpm.data.transforms import build_pretrain_transform


def _dataset(n: int = 16, size: int = 20) -> SeededTransformDataset:
    images = np.random.default_rng(0).integers(0, 256, size=(n, size, size), dtype=np.uint8)
    base = ArrayImageDataset(images, np.arange(n) % 4)
    return SeededTransformDataset(base, build_pretrain_transform(12, [0.5], [0.5]))


def test_same_seed_same_output_regardless_of_global_rng() -> None:
    dataset = _dataset()
    torch.manual_seed(1)
    first, label = dataset[(3, 12345)]
    torch.manual_seed(2)
    torch.rand(100)
    second, _ = dataset[(3, 12345)]
    assert torch.equal(first, second)
    assert first.shape == (1, 12, 12) and first.dtype == torch.float32 and label == 3


def test_different_seed_different_output() -> None:
    dataset = _dataset()
    outputs = [dataset[(3, seed)][0] for seed in range(4)]
    assert all(not torch.equal(outputs[0], other) for other in outputs[1:])


def test_global_rng_untouched_by_seeded_access() -> None:
    dataset = _dataset()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    dataset[(0, 99)]
    assert torch.equal(torch.rand(3), expected)


def test_plain_index_uses_ambient_rng() -> None:
    dataset = _dataset()
    torch.manual_seed(5)
    first, label = dataset[2]
    torch.manual_seed(5)
    second, _ = dataset[2]
    assert torch.equal(first, second) and label == 2 and len(dataset) == 16


def test_collate_stacks_and_names_dropped_in_batch_order() -> None:
    a = (torch.zeros(1, 4, 4), 1)
    b = (torch.ones(1, 4, 4), 3)
    images, labels, dropped = collate_skip_none([a, Unreadable("z/late.png"), b, Unreadable("a/early.png")])
    assert images.shape == (2, 1, 4, 4) and labels.dtype == torch.int64
    assert labels.tolist() == [1, 3]
    assert torch.equal(images[0], a[0]) and torch.equal(images[1], b[0])
    assert dropped == ["z/late.png", "a/early.png"]  # batch order, not sorted


def test_collate_nothing_dropped() -> None:
    _, labels, dropped = collate_skip_none([(torch.zeros(1, 2, 2), 0)])
    assert labels.tolist() == [0] and dropped == []


def test_collate_all_unreadable() -> None:
    images, labels, dropped = collate_skip_none([Unreadable("x.png"), Unreadable("y.png"), Unreadable("x.png")])
    assert images.shape == (0,) and labels.shape == (0,) and labels.dtype == torch.int64
    assert dropped == ["x.png", "y.png", "x.png"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_file_is_named_by_collate(image_tree: Path, num_workers: int) -> None:
    broken_file = image_tree / "train" / "dog" / "broken.png"
    broken_file.write_bytes(np.random.default_rng(1).bytes(200))
    base = ImageFolderDataset(image_tree, "train", channels=3)
    dataset = SeededTransformDataset(base, build_pretrain_transform(8, [0.5] * 3, [0.5] * 3))
    broken = [i for i, (path, _) in enumerate(base.samples) if path.endswith("broken.png")][0]
    assert dataset[(broken, 1)] == Unreadable(str(broken_file))
    assert dataset[broken] == Unreadable(str(broken_file))
    loader = DataLoader(dataset, batch_size=len(dataset), collate_fn=collate_skip_none, num_workers=num_workers)
    images, labels, dropped = next(iter(loader))
    assert dropped == [str(broken_file)] and len(dropped) == 1
    assert images.shape == (5, 3, 8, 8) and labels.shape == (5,)


def test_batches_do_not_depend_on_worker_count() -> None:
    dataset = _dataset(n=16)

    def batches(num_workers: int) -> list[torch.Tensor]:
        sampler = GlobalBatchSampler(len(dataset), batch_size=4, seed=3)
        loader = DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_skip_none, num_workers=num_workers
        )
        return [images for images, _, _ in loader]

    single, workers = batches(0), batches(2)
    assert len(single) == 4
    assert all(torch.equal(x, y) for x, y in zip(single, workers, strict=True))
