"""Pixel targets (norm-pix) and the per-patch reconstruction loss."""

from __future__ import annotations

import torch

from hpm.losses import patch_targets, reconstruction_loss


def _patches(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def test_norm_pix_formula() -> None:
    x = _patches(2, 5, 4)  # P = 4: unbiased and biased variance differ by 4/3
    got = patch_targets(x, norm_pix=True)
    for n in range(2):
        for k in range(5):
            v = x[n, k].double()
            mean = v.mean()
            var = ((v - mean) ** 2).sum() / (v.numel() - 1)  # unbiased
            expected = (v - mean) / torch.sqrt(var + 1e-6)
            torch.testing.assert_close(got[n, k].double(), expected, rtol=1e-5, atol=1e-6)
    biased = (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    assert not torch.allclose(got, biased, atol=1e-3)


def test_norm_pix_eps() -> None:
    flat = torch.full((1, 1, 16), 0.5)
    torch.testing.assert_close(patch_targets(flat), torch.zeros(1, 1, 16), rtol=0, atol=0)
    tiny = torch.tensor([[[0.0, 1e-3, 0.0, 1e-3]]])  # unbiased var 1/3e-6: eps 1e-6 matters
    var = 1e-6 / 3
    expected = (tiny - 5e-4) / (var + 1e-6) ** 0.5
    torch.testing.assert_close(patch_targets(tiny), expected, rtol=1e-4, atol=1e-6)


def test_raw_pixels() -> None:
    x = _patches(2, 3, 12).half()
    got = patch_targets(x, norm_pix=False)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, x.float(), rtol=0, atol=0)
    assert patch_targets(x).dtype == torch.float32


def test_reconstruction_loss_matches_manual_mse() -> None:
    pred, target = _patches(3, 4, 6, seed=1), _patches(3, 4, 6, seed=2)
    loss, per_patch = reconstruction_loss(pred, target)
    assert per_patch.shape == (3, 4) and loss.shape == ()
    manual = torch.empty(3, 4, dtype=torch.float64)
    for n in range(3):
        for k in range(4):
            manual[n, k] = sum((float(pred[n, k, d]) - float(target[n, k, d])) ** 2 for d in range(6)) / 6
    torch.testing.assert_close(per_patch.double(), manual, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.double(), manual.mean(), rtol=1e-5, atol=1e-6)


def test_reconstruction_loss_in_fp32_with_gradient() -> None:
    pred = _patches(2, 4, 8, seed=3).bfloat16().requires_grad_()
    target = _patches(2, 4, 8, seed=4)
    loss, per_patch = reconstruction_loss(pred, target)
    assert loss.dtype == per_patch.dtype == torch.float32
    loss.backward()
    expected = 2 * (pred.detach().float() - target) / (2 * 4 * 8)
    torch.testing.assert_close(pred.grad.float(), expected, rtol=2e-2, atol=1e-3)
