"""Pixel reconstruction loss of masked patches (MAE)."""

from __future__ import annotations

from torch import Tensor

_NORM_PIX_EPS = 1e-6  # MAE's: added to each patch's variance before the square root


def patch_targets(patches: Tensor, norm_pix: bool = True) -> Tensor:
    """Reconstruction targets: pixels, optionally normalised per patch ("norm-pix").

    Args:
        patches: [N, K, P] pixel values of the patches to reconstruct.
        norm_pix: subtract each patch's mean and divide by sqrt(var + 1e-6) (unbiased var, as MAE).

    Returns:
        [N, K, P] fp32 targets.
    """
    patches = patches.float()
    if not norm_pix:
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + _NORM_PIX_EPS) ** 0.5


def reconstruction_loss(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Mean squared error per masked patch and over all masked patches, in fp32.

    Args:
        pred: [N, K, P] predictions.
        target: [N, K, P] targets.

    Returns:
        (scalar L_rec, per-patch loss [N, K]).
    """
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # [N, K]
    return per_patch.mean(), per_patch
