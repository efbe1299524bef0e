"""A distributed sampler that can begin an epoch part-way, for exact resumption of fine-tunes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """A :class:`DistributedSampler` that can begin an epoch part-way.

    ``set_start(n)`` skips this rank's first ``n`` indices of the epoch's permutation (the images
    of the optimizer steps a resumed run already did); the permutation itself depends only on the
    seed and the epoch, never on the global RNG.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of the coming epochs (0: the whole epoch)."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside this rank's {self.num_samples} indices")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start
