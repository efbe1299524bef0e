"""Checks shared by the masking tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hpm.masking import MaskIds


def assert_valid_masks(ids: MaskIds, num_images: int, num_patches: int, num_mask: int) -> None:
    """Exact counts; kept and masked indices disjoint and together every patch once."""
    assert ids.ids_mask.shape == (num_images, num_mask)
    assert ids.ids_keep.shape == (num_images, num_patches - num_mask)
    assert ids.ids_mask.dtype == ids.ids_keep.dtype == torch.int64
    both = torch.cat([ids.ids_keep, ids.ids_mask], dim=1).sort(dim=1).values
    torch.testing.assert_close(both, torch.arange(num_patches).expand(num_images, -1))
    assert int(ids.as_bool(num_patches).sum(dim=1).min()) == num_mask


def masked_neighbours(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Mean number of masked 4-neighbours of a masked patch. mask: [N, L] bool."""
    m = mask.view(-1, *grid).float()
    pad = F.pad(m, (1, 1, 1, 1))
    nbrs = pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
    return float((nbrs * m).sum() / m.sum())
