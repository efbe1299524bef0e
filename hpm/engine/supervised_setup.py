"""The pieces every supervised fine-tune's ``setup`` builds the same way: the seeds, the resumable
training loader, the fp16 gradient scaler and the JSON record of what is fine-tuned (which a
resumed run must match)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hpm.data.distributed_sampler import ResumableDistributedSampler
from hpm.engine import distributed as D
from hpm.engine.precision import Resolved
from hpm.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed torch, Python's ``random`` and NumPy's global generator with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def resumable_loader(
    dataset: Dataset, batch_size: int, num_workers: int, dist: D.DistInfo, seed: int,
    collate_fn: Callable[[list[Any]], Any] | None = None, worker_init_fn: Callable[[int], None] | None = None,
) -> tuple[ResumableDistributedSampler, DataLoader]:
    """The shuffled training sampler (this rank's share, resumable mid-epoch) and its loader; both
    drop the last incomplete batch."""
    sampler = ResumableDistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=num_workers,
                        collate_fn=collate_fn, worker_init_fn=worker_init_fn, persistent_workers=num_workers > 0)
    return sampler, loader


def require_a_step(loader: DataLoader, num_images: int, batch_size: int, dist: D.DistInfo) -> None:
    """Refuse a training loader that yields no full batch (too few images for one optimizer step).

    Raises:
        ConfigError: Naming the image count and the global batch, and what to change.
    """
    if len(loader) < 1:
        raise ConfigError(f"{num_images} training images give no optimizer step of {batch_size} x "
                          f"{dist.world_size} images; lower batch_size or use more images (--labels)")


def grad_scaler(precision: Resolved, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 autocast; None for bf16 and fp32, which need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def setup_record(source: dict[str, Any], dist: D.DistInfo, precision: Resolved) -> dict[str, Any]:
    """What is fine-tuned, the process count and the precision, as JSON types (``str`` for the rest)."""
    return json.loads(json.dumps({"source": source, "world_size": dist.world_size, "precision": precision},
                                 default=str))
