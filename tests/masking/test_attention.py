"""Attention-guided masking (AttMask): high, low and hints on top of the alpha schedule."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from hpm.masking import attention_mask, num_chosen, num_hints, shown_hints

from .helpers import assert_valid_masks


def _rand(n: int, l: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, l, generator=g).softmax(1), torch.rand(n, l, generator=g)


def _top(scores: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    idx = scores.topk(k, dim=1, largest=largest).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)


@pytest.mark.parametrize("mode", ["high", "low", "hints"])
@pytest.mark.parametrize("num_hard", [0, 1, 10, 24, 48])
def test_exact_counts_disjoint_cover(mode: str, num_hard: int) -> None:
    scores, noise = _rand(32, 64, num_hard)
    assert_valid_masks(attention_mask(scores, noise, 48, num_hard, mode, 0.1), 32, 64, 48)


@pytest.mark.parametrize(("mode", "largest"), [("high", True), ("low", False)])
def test_high_and_low_mask_the_most_and_least_attended(mode: str, largest: bool) -> None:
    scores, noise = _rand(64, 64, 3)
    ids = attention_mask(scores, noise, 48, 24, mode)
    masked = ids.as_bool(64)
    chosen = _top(scores, 24, largest)
    assert bool(masked[chosen].all())
    # the first 24 columns of ids_mask are exactly the chosen patches
    first = torch.zeros_like(masked).scatter_(1, ids.ids_mask[:, :24], True)
    assert torch.equal(first, chosen)


@pytest.mark.parametrize(("num_hard", "share"), [(24, 0.1), (24, 0.25), (40, 0.1), (5, 0.1), (10, 0.5)])
def test_hints_show_back_the_right_number_of_top_patches(num_hard: int, share: float) -> None:
    scores, noise = _rand(128, 64, num_hard)
    ids = attention_mask(scores, noise, 48, num_hard, "hints", share)
    masked = ids.as_bool(64)
    top = _top(scores, num_hard)
    shown = (top & ~masked).sum(1)  # most-attended patches left visible
    assert torch.equal(shown, torch.full_like(shown, int(num_hard * share)))
    assert num_hints(num_hard, share) == int(num_hard * share)
    chosen = num_chosen("hints", num_hard, share)
    assert chosen == num_hard - int(num_hard * share)
    first = torch.zeros_like(masked).scatter_(1, ids.ids_mask[:, :chosen], True)
    assert bool(top[first].all()) and int(first.sum()) == 128 * chosen  # score-chosen columns first
    assert num_chosen("high", num_hard, share) == num_hard


def test_hints_are_uniform_among_the_top_patches() -> None:
    """Which of the H most-attended patches are shown is uniform over their ranks."""
    g = torch.Generator().manual_seed(0)
    scores = torch.arange(64, dtype=torch.float).flip(0).expand(4000, -1)  # patch i has rank i
    noise = torch.rand(4000, 64, generator=g)
    masked = attention_mask(scores, noise, 48, 20, "hints", 0.25).as_bool(64)
    counts = (~masked[:, :20]).sum(0).numpy()  # times each top patch was shown (5 per image)
    assert counts.sum() == 4000 * 5
    assert chisquare(counts).pvalue > 1e-3


def test_random_part_is_uniform_over_the_rest() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.arange(64, dtype=torch.float).flip(0).expand(4000, -1)
    masked = attention_mask(scores, torch.rand(4000, 64, generator=g), 48, 20, "hints", 0.1).as_bool(64)
    counts = masked[:, 20:].sum(0).numpy()  # the 44 patches outside the top 20
    assert chisquare(counts).pvalue > 1e-3


def test_unscored_patches_are_never_chosen_by_score() -> None:
    scores, noise = _rand(32, 64, 5)
    scores[:, :40] = float("nan")  # only patches 40..63 scored
    for mode in ("high", "low", "hints"):
        ids = attention_mask(scores, noise, 48, 20, mode, 0.1)
        chosen = ids.ids_mask[:, : num_chosen(mode, 20, 0.1)]
        assert bool((chosen >= 40).all()), mode


def test_bad_arguments_are_refused() -> None:
    scores, noise = _rand(2, 16, 0)
    with pytest.raises(ValueError, match="mode"):
        attention_mask(scores, noise, 8, 4, "middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_hard"):
        attention_mask(scores, noise, 8, 9, "high")
    with pytest.raises(ValueError, match="exceed"):
        attention_mask(scores, noise, 15, 15, "hints", 0.5)


def test_shown_hints_are_the_most_attended_patches_left_visible() -> None:
    gen = torch.Generator().manual_seed(5)
    scores, noise = torch.randn(4, 64, generator=gen), torch.rand(4, 64, generator=gen)
    scores[:, :3] = float("nan")  # never among the most attended
    ids = attention_mask(scores, noise, 48, 20, "hints", 0.1)
    hints = shown_hints(scores, ids, 20)
    assert hints.sum(1).tolist() == [num_hints(20, 0.1)] * 4
    assert not bool((hints & ids.as_bool(64)).any()) and not bool(hints[:, :3].any())
    top = scores.nan_to_num(float("-inf")).topk(20, dim=1).indices
    assert bool(hints.gather(1, top).sum(1).eq(num_hints(20, 0.1)).all())
    assert not bool(shown_hints(scores, ids, 0).any())
