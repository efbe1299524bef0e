"""Ranking metrics of predicted vs real patch losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from hpm.engine.ranking import spearman, top_fraction_overlap


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("n", "k"), [(8, 50), (3, 5), (1, 147)])
def test_spearman_matches_scipy(n: int, k: int) -> None:
    pred, real = _rand(n, k, seed=n), _rand(n, k, seed=k)
    real = real + 0.5 * pred  # some correlation
    got = spearman(pred, real)
    assert got.shape == (n,)
    expected = [spearmanr(pred[i].numpy(), real[i].numpy()).statistic for i in range(n)]
    torch.testing.assert_close(got.double(), torch.tensor(np.array(expected)), atol=1e-5, rtol=1e-5)


def test_spearman_extremes() -> None:
    x = _rand(4, 20, seed=1)
    torch.testing.assert_close(spearman(x, x), torch.ones(4))
    torch.testing.assert_close(spearman(x, -x), -torch.ones(4))
    torch.testing.assert_close(spearman(x, x.exp() * 3 + 1), torch.ones(4))  # rank-based
    assert spearman(x.half(), x.bfloat16()).dtype == torch.float32


def test_top_fraction_overlap() -> None:
    x = _rand(3, 16, seed=2)
    torch.testing.assert_close(top_fraction_overlap(x, x), torch.ones(3))
    torch.testing.assert_close(top_fraction_overlap(-x, x), torch.zeros(3))
    real = torch.arange(8.0).unsqueeze(0)  # hardest: 7, 6 (top 25% of 8 = 2)
    pred = torch.tensor([[5.0, 0, 0, 0, 0, 0, 0, 9]])  # predicts 7 and 0
    torch.testing.assert_close(top_fraction_overlap(pred, real), torch.tensor([0.5]))
    # fraction 0.5: real top-4 {4, 5, 6, 7}, pred top-4 {7, 0, 6, 3}: 2 of 4
    pred2 = torch.tensor([[4.0, 0.1, 0.2, 0.3, -1, -1, 3, 9]])
    torch.testing.assert_close(top_fraction_overlap(pred2, real, 0.5), torch.tensor([0.5]))
    # fewer than 1/fraction patches still uses one
    torch.testing.assert_close(top_fraction_overlap(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 5.0]])), torch.tensor([1.0]))


def test_masked_spearman_matches_scipy_on_the_valid_entries() -> None:
    from hpm.engine.ranking import masked_spearman

    pred, real = _rand(6, 30, seed=3), _rand(6, 30, seed=4) + 0.3 * _rand(6, 30, seed=3)
    valid = _rand(6, 30, seed=5) > -0.5
    valid[5] = False
    valid[5, 0] = True  # one valid entry: no correlation
    pred = pred.masked_fill(~valid, float("nan"))  # invalid entries may hold anything
    got = masked_spearman(pred, real, valid)
    for i in range(5):
        v = valid[i]
        expected = spearmanr(pred[i, v].numpy(), real[i, v].numpy()).statistic
        assert float(got[i]) == pytest.approx(expected, abs=1e-5)
    assert torch.isnan(got[5])
    full = torch.ones(6, 30, dtype=torch.bool)
    torch.testing.assert_close(masked_spearman(real, pred.nan_to_num(0.0), full), spearman(real, pred.nan_to_num(0.0)))


def test_chosen_overlap_counts_the_first_columns() -> None:
    from hpm.engine.ranking import chosen_overlap

    real = torch.tensor([[8.0, 1.0, 7.0, 2.0, 3.0, 4.0, 5.0, 6.0]])  # hardest quarter: columns 0 and 2
    assert float(chosen_overlap(real, 2)) == 0.5  # columns 0, 1: one of them in the top quarter
    assert float(chosen_overlap(real, 3)) == pytest.approx(2 / 3)
    assert float(chosen_overlap(-real, 1)) == 0.0
