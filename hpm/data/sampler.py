"""A batch sampler whose global batches do not depend on the number of processes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from hpm.errors import DataError

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _derive(seed: int, epoch: int, stream: int) -> int:
    """A 64-bit key that depends only on ``(seed, epoch, stream)``."""
    sequence = np.random.SeedSequence(entropy=seed & _MASK64, spawn_key=(stream, epoch & _MASK64))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrapping arithmetic)."""
    z = values.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's share of each global batch as ``(index, sample_seed)`` pairs.

    Every epoch shuffles ``range(num_samples)`` with a generator seeded from
    ``(seed, epoch)`` and cuts it into global batches of ``batch_size * world_size``
    (the incomplete last one is dropped). Rank ``r`` gets the slice
    ``[r * batch_size, (r + 1) * batch_size)`` of each global batch. Each sample's seed is a
    function of ``(seed, epoch, position in the epoch)`` only, so one process with batch
    ``2B`` sees exactly the pairs that two ranks with batch ``B`` see together.

    Use it as ``DataLoader(dataset, batch_sampler=sampler)``.

    Args:
        num_samples: Size of the data set.
        batch_size: Samples per batch on this rank.
        world_size: Number of processes.
        rank: This process's rank.
        seed: Run seed.

    Raises:
        DataError: The global batch is larger than the data set.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or world_size < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and world_size ({world_size}) must be >= 1"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise DataError(
                f"the global batch ({batch_size} x {world_size} process(es) = {global_batch}) "
                f"is larger than the data set ({num_samples} images); lower train.batch_size "
                "or use more data"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start = 0

    @property
    def global_batch_size(self) -> int:
        """Samples per global batch (all ranks together)."""
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Number of full global batches in one epoch."""
        return self.num_samples // self.global_batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate (its shuffle and seeds); resets ``set_start`` to 0."""
        self.epoch = int(epoch)
        self.start = 0

    def set_start(self, batch_index: int) -> None:
        """Skip the first ``batch_index`` batches of the current epoch (to resume mid-epoch)."""
        if not 0 <= batch_index <= self.batches_per_epoch:
            raise ValueError(
                f"batch_index must be in [0, {self.batches_per_epoch}], got {batch_index}"
            )
        self.start = int(batch_index)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator()
        generator.manual_seed(_derive(self.seed, self.epoch, stream=0))
        perm = torch.randperm(self.num_samples, generator=generator).numpy()  # [N] int64
        seed_key = np.uint64(_derive(self.seed, self.epoch, stream=1))
        global_batch = self.global_batch_size
        offset = self.rank * self.batch_size
        for batch in range(self.start, self.batches_per_epoch):
            begin = batch * global_batch + offset
            positions = np.arange(begin, begin + self.batch_size, dtype=np.uint64)  # [B]
            with np.errstate(over="ignore"):
                mixed = _splitmix64(seed_key + (positions + np.uint64(1)) * _GOLDEN)
            seeds = (mixed >> np.uint64(1)).tolist()  # 63-bit, non-negative
            indices = perm[begin : begin + self.batch_size].tolist()
            yield list(zip(indices, seeds))
