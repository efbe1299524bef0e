"""The setup pieces every supervised fine-tune shares: the resumable loader and its one-step check."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from hpm.engine import distributed as D
from hpm.engine.supervised_setup import require_a_step, resumable_loader
from hpm.errors import ConfigError


def _loader(num_images: int, batch_size: int, world_size: int = 1):
    data = TensorDataset(torch.arange(num_images))
    return resumable_loader(data, batch_size, 0, D.DistInfo(rank=0, world_size=world_size), seed=0)[1]


def test_a_loader_without_a_full_batch_is_refused_with_the_counts() -> None:
    with pytest.raises(ConfigError, match=r"3 training images give no optimizer step of 4 x 1 images; lower batch_size"):
        require_a_step(_loader(3, 4), 3, 4, D.DistInfo())


def test_the_check_counts_this_rank_share_of_the_images() -> None:
    dist = D.DistInfo(rank=0, world_size=2)
    with pytest.raises(ConfigError, match=r"6 training images give no optimizer step of 4 x 2"):
        require_a_step(_loader(6, 4, world_size=2), 6, 4, dist)  # 3 images per rank


def test_one_full_batch_passes_and_the_last_partial_batch_is_dropped() -> None:
    loader = _loader(9, 4)
    require_a_step(loader, 9, 4, D.DistInfo())
    assert len(loader) == 2
    assert sum(len(batch[0]) for batch in loader) == 8
