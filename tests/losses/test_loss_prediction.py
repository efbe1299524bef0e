"""HPM's loss-prediction objectives: the pairwise ranking loss and the z-scored MSE."""

from __future__ import annotations

import math

import pytest
import torch

from hpm.losses import absolute_loss, loss_prediction_loss, relative_loss


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _relative_brute_force(scores: torch.Tensor, losses: torch.Tensor) -> float:
    """Every ordered pair (i, j), i != j, of one image with l_i != l_j; y = l_j > l_i;
    BCE of sigmoid(s_j - s_i); mean over all such pairs of all images."""
    total, pairs = 0.0, 0
    s, l = scores.double().tolist(), losses.double().tolist()
    for n in range(len(s)):
        for i in range(len(s[n])):
            for j in range(len(s[n])):
                if i == j or l[n][i] == l[n][j]:
                    continue
                z = s[n][j] - s[n][i]
                y = 1.0 if l[n][j] > l[n][i] else 0.0
                # -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))
                total += y * _softplus(-z) + (1 - y) * _softplus(z)
                pairs += 1
    return total / max(pairs, 1)


def _data(n: int, k: int, seed: int, tie_levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, k, generator=g) * 2
    if tie_levels is None:
        losses = torch.rand(n, k, generator=g)
    else:  # repeated values: many tied pairs
        losses = torch.randint(0, tie_levels, (n, k), generator=g).float() / tie_levels
    return scores, losses


@pytest.mark.parametrize(("n", "k", "seed", "levels"), [(1, 2, 0, None), (3, 7, 1, None), (4, 9, 2, 3), (2, 12, 3, 2), (5, 6, 4, 4)])
def test_relative_loss_equals_brute_force(n: int, k: int, seed: int, levels: int | None) -> None:
    scores, losses = _data(n, k, seed, levels)
    if levels is not None:  # the case must really contain ties
        assert any(len(set(row.tolist())) < k for row in losses)
    got = relative_loss(scores, losses)
    assert got.dtype == torch.float32 and got.shape == ()
    assert float(got) == pytest.approx(_relative_brute_force(scores, losses), rel=1e-5, abs=1e-6)


def test_relative_loss_ties_only_in_one_image() -> None:
    """Pairs are averaged over the whole batch: an all-tied image contributes nothing."""
    scores, losses = _data(2, 6, 5)
    tied = losses.clone()
    tied[1] = 0.3
    expected = _relative_brute_force(scores[:1], losses[:1])
    assert float(relative_loss(scores, tied)) == pytest.approx(expected, rel=1e-5)


def test_relative_loss_all_tied_is_zero_and_finite() -> None:
    scores = torch.randn(3, 8, generator=torch.Generator().manual_seed(6)).requires_grad_()
    loss = relative_loss(scores, torch.full((3, 8), 0.25))
    assert torch.isfinite(loss)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(scores.grad).all() and float(scores.grad.abs().sum()) == 0.0


def test_relative_loss_is_scale_free_in_the_losses() -> None:
    """Only the order of the real losses matters."""
    scores, losses = _data(2, 8, 7)
    torch.testing.assert_close(relative_loss(scores, losses), relative_loss(scores, losses.exp() * 100))


def _naive_release_loss(scores: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """The authors' formulation: log(sigmoid + 1e-6) in the input precision."""
    logits = scores.unsqueeze(1) - scores.unsqueeze(2)
    labels = (losses.unsqueeze(1) > losses.unsqueeze(2)).to(scores.dtype)
    valid = (losses.unsqueeze(1) != losses.unsqueeze(2)).to(scores.dtype)
    p = torch.sigmoid(logits)
    bce = -(labels * torch.log(p + 1e-6) + (1 - labels) * torch.log(1 - p + 1e-6))
    return (bce * valid).sum() / valid.sum()


def _badly_ranked(gap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch 1 has the lowest real loss but a score ``gap`` above patch 0 (the hardest)."""
    scores = torch.tensor([[0.0, gap]], requires_grad=True)
    losses = torch.tensor([[1.0, 0.0]])
    return scores, losses


@pytest.mark.parametrize("gap", [50.0, 100.0, 1000.0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_relative_loss_stable_under_autocast(gap: float, dtype: torch.dtype) -> None:
    scores, losses = _badly_ranked(gap)
    with torch.autocast("cpu", dtype=dtype):
        loss = relative_loss(scores.to(dtype), losses.to(dtype))
    assert torch.isfinite(loss)
    # BCE of a confidently wrong pair: softplus(gap) ~= gap, both orders
    assert loss.item() == pytest.approx(gap, rel=1e-3)
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    torch.testing.assert_close(scores.grad, torch.tensor([[-1.0, 1.0]]))


@pytest.mark.parametrize("gap", [50.0, 100.0, 1000.0])
def test_naive_log_sigmoid_saturates_in_fp16(gap: float) -> None:
    """Contrast: the release's log(sigmoid + 1e-6) in fp16 saturates for the same gap.

    sigmoid(+-gap) is exactly 1 / 0 in fp16, so the loss is capped at -log(1e-6) whatever the
    gap and sigmoid's gradient is exactly 0: the chain gives 0 (or 0 * inf = NaN, as 1e6
    overflows fp16), never a usable gradient.
    """
    scores, losses = _badly_ranked(gap)
    logits = (scores[:, 1] - scores[:, 0]).detach().half()
    assert float(torch.sigmoid(logits)) == 1.0 and float(torch.sigmoid(-logits)) == 0.0
    naive = _naive_release_loss(scores.half(), losses.half())
    assert naive.item() == pytest.approx(-math.log(1e-6), rel=2e-2)  # capped, whatever the gap
    naive.backward()
    g = scores.grad
    assert bool(((g == 0) | ~torch.isfinite(g)).all()), g
    ours = relative_loss(scores.half(), losses.half())
    scores.grad = None
    ours.backward()
    assert float(scores.grad.abs().sum()) > 1.0


def test_absolute_loss_formula() -> None:
    scores, losses = _data(3, 10, 8)
    mean = losses.mean(dim=1, keepdim=True)
    var = ((losses - mean) ** 2).sum(dim=1, keepdim=True) / (losses.shape[1] - 1)  # unbiased
    target = (losses - mean) / torch.sqrt(var + 1e-6)
    expected = ((scores - target) ** 2).mean()
    torch.testing.assert_close(absolute_loss(scores, losses), expected)
    # the z-scores are per image: scaling one image's losses changes nothing
    scaled = losses.clone()
    scaled[0] = scaled[0] * 50 + 3
    torch.testing.assert_close(absolute_loss(scores, scaled), expected, rtol=1e-4, atol=1e-5)


def test_absolute_loss_zero_for_perfect_z_scores() -> None:
    losses = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    z = (losses - losses.mean()) / torch.sqrt(losses.var() + 1e-6)
    assert float(absolute_loss(z, losses)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("fn", [relative_loss, absolute_loss])
def test_no_gradient_into_the_real_losses(fn) -> None:
    scores, losses = _data(2, 8, 9)
    scores.requires_grad_()
    losses.requires_grad_()
    fn(scores, losses * 2).backward()
    assert losses.grad is None
    assert scores.grad is not None and float(scores.grad.abs().sum()) > 0


def test_dispatch() -> None:
    scores, losses = _data(2, 8, 10)
    torch.testing.assert_close(loss_prediction_loss("relative", scores, losses), relative_loss(scores, losses))
    torch.testing.assert_close(loss_prediction_loss("absolute", scores, losses), absolute_loss(scores, losses))
    with pytest.raises(ValueError):
        loss_prediction_loss("none", scores, losses)  # type: ignore[arg-type]
