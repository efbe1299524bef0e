"""Random masking (MAE)."""

from __future__ import annotations

import torch
from torch import Tensor

from hpm.masking.ids import MaskIds, split_by_order
from hpm.masking.strategy import MaskRequest, MaskStrategy


def random_mask(noise: Tensor, num_mask: int) -> MaskIds:
    """Mask ``num_mask`` patches per image uniformly at random.

    Args:
        noise: [N, L] i.i.d. uniform noise (draw it from a seeded generator); the patches
            with the largest noise are masked.
        num_mask: K, patches hidden per image.
    """
    order = torch.argsort(noise, dim=1, descending=True)  # [N, L]
    return split_by_order(order, num_mask)


def _random_request(request: MaskRequest) -> MaskIds:
    return random_mask(request.noise(), request.num_mask)


RANDOM = MaskStrategy("random", _random_request)
