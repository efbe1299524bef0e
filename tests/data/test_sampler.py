"""The global batch sampler: coverage, determinism, rank equivalence and resuming."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from hpm.data.sampler import GlobalBatchSampler
from hpm.errors import DataError

Pairs = list[tuple[int, int]]


def _epoch(sampler: GlobalBatchSampler, epoch: int) -> list[Pairs]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_coverage_without_repeats() -> None:
    sampler = GlobalBatchSampler(103, batch_size=10, seed=1)
    batches = _epoch(sampler, 0)
    assert len(batches) == 10 == sampler.batches_per_epoch == len(sampler)
    assert all(len(batch) == 10 for batch in batches)
    indices = [index for batch in batches for index, _ in batch]
    assert len(set(indices)) == 100 and set(indices) <= set(range(103))


def test_sample_seeds_are_63_bit_and_distinct() -> None:
    seeds = [s for batch in _epoch(GlobalBatchSampler(200, 20), 0) for _, s in batch]
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == len(seeds)


def test_epochs_differ_and_are_deterministic() -> None:
    sampler = GlobalBatchSampler(64, batch_size=8, seed=5)
    epoch0, epoch1 = _epoch(sampler, 0), _epoch(sampler, 1)
    assert epoch0 != epoch1
    assert [i for i, _ in epoch0[0]] != [i for i, _ in epoch1[0]]
    assert _epoch(GlobalBatchSampler(64, batch_size=8, seed=5), 1) == epoch1
    assert _epoch(GlobalBatchSampler(64, batch_size=8, seed=6), 1) != epoch1
    assert list(sampler) == epoch1  # iterating again repeats the epoch


def test_two_ranks_equal_one_process_with_double_batch() -> None:
    single = _epoch(GlobalBatchSampler(50, batch_size=8, seed=2), 3)
    rank0 = _epoch(GlobalBatchSampler(50, batch_size=4, world_size=2, rank=0, seed=2), 3)
    rank1 = _epoch(GlobalBatchSampler(50, batch_size=4, world_size=2, rank=1, seed=2), 3)
    assert len(single) == len(rank0) == len(rank1) == 6
    assert [a + b for a, b in zip(rank0, rank1)] == single
    assert not set(map(tuple, rank0)) & set(map(tuple, rank1))


def test_set_start_skips_batches_and_set_epoch_resets() -> None:
    sampler = GlobalBatchSampler(40, batch_size=4, seed=0)
    full = _epoch(sampler, 2)
    sampler.set_start(3)
    assert len(sampler) == 7
    assert list(sampler) == full[3:]
    sampler.set_start(10)
    assert len(sampler) == 0 and list(sampler) == []
    sampler.set_epoch(2)
    assert len(sampler) == 10 and list(sampler) == full
    with pytest.raises(ValueError):
        sampler.set_start(11)


def test_resume_across_ranks() -> None:
    single = GlobalBatchSampler(40, batch_size=4, world_size=2, rank=1, seed=4)
    full = _epoch(single, 1)
    single.set_epoch(1)
    single.set_start(2)
    assert list(single) == full[2:]


class _Echo(Dataset):
    """Returns the key it is indexed with."""

    def __len__(self) -> int:
        return 30

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key


def test_data_loader_length() -> None:
    sampler = GlobalBatchSampler(30, batch_size=3, world_size=2, rank=1)
    loader = DataLoader(_Echo(), batch_sampler=sampler, collate_fn=list)
    batches = list(loader)
    sampler.set_epoch(0)
    assert len(loader) == 5 and batches == list(sampler)


def test_batch_larger_than_data_set() -> None:
    with pytest.raises(DataError, match="larger than the data set"):
        GlobalBatchSampler(10, batch_size=6, world_size=2)
    GlobalBatchSampler(12, batch_size=6, world_size=2)  # exactly one global batch is fine


def test_bad_rank() -> None:
    with pytest.raises(ValueError):
        GlobalBatchSampler(10, batch_size=1, world_size=2, rank=2)
