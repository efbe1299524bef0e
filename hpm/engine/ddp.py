"""Wrapping a model for data-parallel training under torchrun."""

from __future__ import annotations

from torch import nn
import torch
from torch.nn.parallel import DistributedDataParallel

from hpm.engine.distributed import DistInfo


def wrap_ddp(model: nn.Module, device: torch.device, dist: DistInfo) -> DistributedDataParallel | None:
    """``model`` in a :class:`DistributedDataParallel` when this process is one of several, else None.

    The caller keeps training the unwrapped ``model``'s parameters; the wrapper only synchronises
    the gradients of its backward passes.
    """
    if not dist.enabled:
        return None
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
