"""alpha_t schedules and H = int(K * alpha)."""

from __future__ import annotations

import pytest
import torch

from hpm.config import MaskConfig
from hpm.masking import alpha_at, hard_patch_mask, num_hard_patches


def test_easy_to_hard_per_epoch_release_values() -> None:
    cfg = MaskConfig()  # easy_to_hard, 0 -> 0.5, per epoch
    assert alpha_at(cfg, epoch=0, step=0, epochs=10, total_steps=1000) == pytest.approx(0.05)
    assert alpha_at(cfg, epoch=4, step=450, epochs=10, total_steps=1000) == pytest.approx(0.25)
    assert alpha_at(cfg, epoch=9, step=999, epochs=10, total_steps=1000) == pytest.approx(0.5)
    # constant within an epoch: the step does not matter
    assert alpha_at(cfg, 3, 0, 10, 1000) == alpha_at(cfg, 3, 399, 10, 1000)


@pytest.mark.parametrize(("start", "end", "epochs"), [(0.0, 0.5, 10), (0.1, 0.6, 7), (0.2, 1.0, 200)])
def test_easy_to_hard_per_epoch_formula(start: float, end: float, epochs: int) -> None:
    cfg = MaskConfig(alpha_start=start, alpha_end=end)
    for epoch in range(epochs):
        expected = start + (epoch + 1) / epochs * (end - start)
        assert alpha_at(cfg, epoch, 0, epochs, 10 * epochs) == pytest.approx(expected)
    assert alpha_at(cfg, epochs + 3, 0, epochs, 10 * epochs) == pytest.approx(end)  # clamped


def test_easy_to_hard_per_iteration() -> None:
    cfg = MaskConfig(schedule_unit="iter", alpha_start=0.0, alpha_end=0.5)
    total = 100
    for step in (0, 1, 49, 98, 99):
        assert alpha_at(cfg, 0, step, 10, total) == pytest.approx(0.5 * (step + 1) / total)
    assert alpha_at(cfg, 0, 49, 10, total) == alpha_at(cfg, 7, 49, 10, total)  # epoch is ignored
    assert alpha_at(cfg, 0, 150, 10, total) == pytest.approx(0.5)  # clamped


def test_hard_to_easy_is_reversed() -> None:
    cfg = MaskConfig(schedule="hard_to_easy", alpha_start=0.0, alpha_end=0.5)
    assert alpha_at(cfg, 0, 0, 10, 100) == pytest.approx(0.45)
    assert alpha_at(cfg, 9, 0, 10, 100) == pytest.approx(0.0)
    e2h = MaskConfig(alpha_start=0.0, alpha_end=0.5)
    for epoch in range(10):
        expected = 0.5 - (epoch + 1) / 10 * 0.5
        assert alpha_at(cfg, epoch, 0, 10, 100) == pytest.approx(expected)
        assert alpha_at(cfg, epoch, 0, 10, 100) + alpha_at(e2h, epoch, 0, 10, 100) == pytest.approx(0.5)
    it = MaskConfig(schedule="hard_to_easy", schedule_unit="iter", alpha_start=0.1, alpha_end=0.3)
    assert alpha_at(it, 0, 0, 1, 4) == pytest.approx(0.3 - 0.25 * 0.2)


def test_fixed() -> None:
    cfg = MaskConfig(schedule="fixed", alpha=0.3)
    for epoch, step in ((0, 0), (5, 500), (9, 999)):
        assert alpha_at(cfg, epoch, step, 10, 1000) == 0.3


def test_fixed_alpha_one_masks_exactly_the_hardest() -> None:
    cfg = MaskConfig(schedule="fixed", alpha=1.0)
    k = 48
    h = num_hard_patches(k, alpha_at(cfg, 2, 20, 10, 100))
    assert h == k
    g = torch.Generator().manual_seed(0)
    scores, noise = torch.randn(8, 64, generator=g), torch.rand(8, 64, generator=g)
    masked = hard_patch_mask(scores, noise, k, h).as_bool(64)
    top = torch.zeros(8, 64, dtype=torch.bool).scatter_(1, scores.topk(k, dim=1).indices, True)
    torch.testing.assert_close(masked, top)


@pytest.mark.parametrize("k", [1, 27, 48, 147, 192])
def test_num_hard_patches(k: int) -> None:
    for alpha in (0.0, 0.05, 0.1, 0.25, 0.333, 0.5, 0.77, 0.999, 1.0):
        assert num_hard_patches(k, alpha) == int(k * alpha)
    assert num_hard_patches(k, 0.0) == 0
    assert num_hard_patches(k, 1.0) == k
