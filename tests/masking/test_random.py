"""Random masking (MAE)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from hpm.masking import num_masked, random_mask

from .helpers import assert_valid_masks


def _noise(n: int, l: int, seed: int) -> torch.Tensor:
    return torch.rand(n, l, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("num_patches", "ratio"), [(64, 0.75), (196, 0.75), (36, 0.5), (16, 0.9)])
def test_exact_counts_disjoint_cover(num_patches: int, ratio: float) -> None:
    k = num_masked(num_patches, ratio)
    ids = random_mask(_noise(32, num_patches, 0), k)
    assert_valid_masks(ids, 32, num_patches, k)


def test_masks_the_largest_noise() -> None:
    noise = _noise(8, 64, 1)
    ids = random_mask(noise, 48)
    lowest_masked = torch.gather(noise, 1, ids.ids_mask).amin(dim=1)
    highest_kept = torch.gather(noise, 1, ids.ids_keep).amax(dim=1)
    assert bool((lowest_masked > highest_kept).all())


def test_rows_differ() -> None:
    mask = random_mask(_noise(16, 64, 2), 48).as_bool(64)
    same = (mask.unsqueeze(0) == mask.unsqueeze(1)).all(dim=-1)  # [16, 16]
    assert int(same.sum()) == 16  # only the diagonal


def test_deterministic_for_a_seeded_generator() -> None:
    a = random_mask(_noise(4, 64, 3), 48)
    b = random_mask(_noise(4, 64, 3), 48)
    c = random_mask(_noise(4, 64, 4), 48)
    torch.testing.assert_close(a.ids_mask, b.ids_mask)
    torch.testing.assert_close(a.ids_keep, b.ids_keep)
    assert not torch.equal(a.as_bool(64), c.as_bool(64))


def test_every_patch_equally_likely() -> None:
    l, k, n = 16, 12, 8000
    counts = random_mask(_noise(n, l, 5), k).as_bool(l).sum(dim=0).double().numpy()
    assert counts.sum() == n * k
    assert chisquare(counts).pvalue > 1e-3
