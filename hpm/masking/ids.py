"""The result every masking strategy returns."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MaskIds(NamedTuple):
    """Which patches each image keeps and which it hides."""

    ids_keep: Tensor  # [N, L - K] int64, visible patch indices
    ids_mask: Tensor  # [N, K] int64, masked patch indices

    def rows(self, start: int, stop: int) -> "MaskIds":
        """The masks of images ``start:stop`` (a rank's share of a global batch)."""
        return MaskIds(self.ids_keep[start:stop], self.ids_mask[start:stop])

    def as_bool(self, num_patches: int) -> Tensor:
        """[N, L] bool, True where the patch is masked."""
        out = torch.zeros(self.ids_mask.shape[0], num_patches, dtype=torch.bool, device=self.ids_mask.device)
        return out.scatter_(1, self.ids_mask, True)


def num_masked(num_patches: int, ratio: float) -> int:
    """K = L - int(L * (1 - ratio)): MAE keeps exactly int(L * (1 - ratio)) patches visible."""
    return num_patches - int(num_patches * (1 - ratio))


def split_by_order(order: Tensor, num_mask: int) -> MaskIds:
    """Mask the first ``num_mask`` patches of each row of ``order`` [N, L], keep the rest."""
    return MaskIds(ids_keep=order[:, num_mask:], ids_mask=order[:, :num_mask])
