"""HPM's hard-patch masking: top-H by score plus K - H uniformly random others."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from hpm.masking import MaskIds, hard_patch_mask, random_mask, split_by_order

from .helpers import assert_valid_masks


def _rand(n: int, l: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, l, generator=g), torch.rand(n, l, generator=g)


def _topk_bool(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(k, dim=1).indices, True)


@pytest.mark.parametrize("num_hard", [0, 1, 10, 24, 47, 48])
def test_exact_counts_disjoint_cover(num_hard: int) -> None:
    scores, noise = _rand(32, 64, num_hard)
    assert_valid_masks(hard_patch_mask(scores, noise, 48, num_hard), 32, 64, 48)


@pytest.mark.parametrize(("num_patches", "num_mask", "num_hard"), [(64, 48, 1), (64, 48, 24), (196, 147, 73), (16, 4, 3)])
def test_top_scored_patches_always_masked(num_patches: int, num_mask: int, num_hard: int) -> None:
    for trial in range(50):
        scores, noise = _rand(16, num_patches, 100 + trial)
        masked = hard_patch_mask(scores, noise, num_mask, num_hard).as_bool(num_patches)
        top = _topk_bool(scores, num_hard)
        assert bool(masked[top].all()), f"trial {trial}: a top-{num_hard} patch was left visible"


def test_no_hard_patches_is_random_masking() -> None:
    scores, noise = _rand(16, 64, 1)
    hard = hard_patch_mask(scores, noise, 48, 0)
    rand = random_mask(noise, 48)
    torch.testing.assert_close(hard.as_bool(64), rand.as_bool(64))
    torch.testing.assert_close(hard.ids_mask, rand.ids_mask)  # same order too


def test_all_hard_masks_exactly_the_top_k() -> None:
    scores, noise = _rand(16, 64, 2)
    masked = hard_patch_mask(scores, noise, 48, 48).as_bool(64)
    torch.testing.assert_close(masked, _topk_bool(scores, 48))
    # and the noise plays no part
    other = hard_patch_mask(scores, torch.rand(16, 64, generator=torch.Generator().manual_seed(9)), 48, 48)
    torch.testing.assert_close(other.as_bool(64), masked)


def test_num_hard_out_of_range_raises() -> None:
    scores, noise = _rand(2, 64, 3)
    with pytest.raises(ValueError):
        hard_patch_mask(scores, noise, 48, 49)
    with pytest.raises(ValueError):
        hard_patch_mask(scores, noise, 48, -1)


def test_negated_scores_mask_the_lowest() -> None:
    scores, noise = _rand(16, 64, 4)
    masked = hard_patch_mask(-scores, noise, 48, 20).as_bool(64)
    lowest = _topk_bool(-scores, 20)
    assert bool(masked[lowest].all())
    assert not bool(masked[_topk_bool(scores, 20)].all())  # the highest are not all masked


def test_deterministic_for_the_same_noise() -> None:
    scores, noise = _rand(8, 64, 5)
    a = hard_patch_mask(scores, noise, 48, 12)
    b = hard_patch_mask(scores.clone(), noise.clone(), 48, 12)
    torch.testing.assert_close(a.ids_mask, b.ids_mask)
    torch.testing.assert_close(a.ids_keep, b.ids_keep)


def test_does_not_modify_its_inputs() -> None:
    scores, noise = _rand(4, 64, 6)
    s0, n0 = scores.clone(), noise.clone()
    hard_patch_mask(scores, noise, 48, 24)
    torch.testing.assert_close(scores, s0, rtol=0, atol=0)
    torch.testing.assert_close(noise, n0, rtol=0, atol=0)


# ------------------------------------------------------------------- uniform random part
L, K, H, N = 16, 8, 3, 20000


def _random_part_counts(mask_fn) -> np.ndarray:
    """How often each patch outside the fixed top-H is chosen by the random part, over N images."""
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(L, generator=g).float()
    scores = perm.expand(N, -1)  # the same fixed scores for every image
    noise = torch.rand(N, L, generator=g)
    masked = mask_fn(scores, noise, K, H).as_bool(L)
    top = perm.topk(H).indices
    assert bool(masked[:, top].all())
    rest = torch.ones(L, dtype=torch.bool)
    rest[top] = False
    counts = masked[:, rest].sum(dim=0).double().numpy()
    assert counts.sum() == N * (K - H)
    return counts


def _biased_mask(scores: torch.Tensor, noise: torch.Tensor, num_mask: int, num_hard: int) -> MaskIds:
    """Top-H by score, then the lowest patch indices instead of random ones (deliberately wrong)."""
    key = -torch.arange(scores.shape[1], dtype=torch.float32).expand_as(scores) / scores.shape[1]
    key = key.scatter(1, scores.topk(num_hard, dim=1).indices, 2.0)
    return split_by_order(torch.argsort(key, dim=1, descending=True), num_mask)


def _slightly_biased_mask(scores: torch.Tensor, noise: torch.Tensor, num_mask: int, num_hard: int) -> MaskIds:
    """Random, but even-numbered patches are favoured a little (noise + 0.05)."""
    noise = noise.clone()
    noise[:, ::2] += 0.05
    return hard_patch_mask(scores, noise, num_mask, num_hard)


def test_random_part_is_uniform() -> None:
    counts = _random_part_counts(hard_patch_mask)
    result = chisquare(counts)  # expected N * (K - H) / (L - H) each
    assert result.pvalue > 1e-3, (counts, result)


@pytest.mark.parametrize("biased", [_biased_mask, _slightly_biased_mask])
def test_uniformity_check_rejects_a_biased_choice(biased) -> None:
    """The same statistic flags a biased selection, so the test above can fail."""
    counts = _random_part_counts(biased)
    result = chisquare(counts)
    assert result.pvalue < 1e-6, (counts, result)
