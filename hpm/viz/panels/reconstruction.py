"""The last panel: what the student reconstructs under the shown mask, or a picture of its target."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hpm.config import Config
from hpm.eval.patch_loss import PretrainedModels
from hpm.losses.targets import TargetFn, all_patches
from hpm.masking import MaskIds
from hpm.models.mae import MaskedAutoencoder
from hpm.viz.target_view import hog_picture, pca_picture


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, imgs: Tensor, ids: MaskIds, norm_pix: bool) -> Tensor:
    """The input with its masked patches replaced by the model's predictions (normalised space).

    Norm-pix predictions are mapped back with each masked patch's own mean and variance, as
    MAE's visualisation does. [N, C, H, W] -> [N, C, H, W].
    """
    pred = model(imgs, ids.ids_keep, ids.ids_mask).pred.float()  # [N, K, P]
    patches = model.patchify(imgs).float()  # [N, L, P]
    index = ids.ids_mask.unsqueeze(-1).expand(-1, -1, patches.shape[-1])  # [N, K, P]
    if norm_pix:
        target = torch.gather(patches, 1, index)  # [N, K, P]
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
    return model.unpatchify(patches.scatter(1, index, pred))


def denormalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """[N, C, H, W] normalised images back to pixels in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


@torch.no_grad()
def target_picture(cfg: Config, target: TargetFn, imgs: Tensor, grid: tuple[int, int]) -> Tensor:
    """A picture of a target that is not pixels: HOG as oriented bars, features as a PCA map.
    [N, C, H, W] -> [N, 1 or 3, H', W'] in [0, 1]."""
    every = target(imgs, all_patches(imgs.shape[0], grid[0] * grid[1], imgs.device))  # [N, L, D]
    if cfg.loss.target == "hog":
        return hog_picture(every, grid, imgs.shape[1], cfg.loss.hog_bins)
    return pca_picture(every, grid, tuple(imgs.shape[-2:]))


def reconstruction_picture(
    models: PretrainedModels, imgs: Tensor, ids: MaskIds, mean: Sequence[float], std: Sequence[float], target: TargetFn
) -> Tensor:
    """[N, C, H, W] what the student reconstructs under ``ids`` (pixel targets), else the target's picture."""
    cfg, student = models.cfg, models.student
    if cfg.loss.target in ("norm_pix", "pix"):
        return denormalise(reconstruct(student, imgs, ids, cfg.loss.target == "norm_pix"), mean, std)
    return target_picture(cfg, target, imgs, student.grid_size)
