"""Video tokens: a clip cut into tubelets of ``t`` frames x ``p`` x ``p`` pixels (VideoMAE).

Token order is time-major: token ``i * H' * W' + r * W' + c`` is the tubelet of frames
``i*t .. i*t + t - 1`` at patch row ``r``, column ``c`` (``T' = T / t``, ``H' = H / p``,
``W' = W / p``). Within a tubelet the values are ordered (frame, row, column, channel), so a
token's target is ``t * p * p * C`` wide.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def patchify_clips(clips: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """[N, C, T, H, W] -> [N, L, t*p*p*C] with L = (T/t)(H/p)(W/p), time-major tokens."""
    p, t = patch_size, tubelet_size
    n, c, frames, h, w = clips.shape
    x = clips.reshape(n, c, frames // t, t, h // p, p, w // p, p)
    x = torch.einsum("ncitrpsq->nirstpqc", x)  # [N, T', H', W', t, p, p, C]
    return x.reshape(n, (frames // t) * (h // p) * (w // p), t * p * p * c)


def unpatchify_clips(tokens: Tensor, grid: tuple[int, int, int], patch_size: int, tubelet_size: int,
                     channels: int) -> Tensor:
    """[N, L, t*p*p*C] -> [N, C, T, H, W] (inverse of :func:`patchify_clips`).

    Args:
        tokens: per-token values in :func:`patchify_clips`'s layout.
        grid: tubelet positions ``(T', H', W')``.
        patch_size: p.
        tubelet_size: t.
        channels: C.
    """
    p, t, c = patch_size, tubelet_size, channels
    gt, gh, gw = grid
    x = tokens.reshape(tokens.shape[0], gt, gh, gw, t, p, p, c)
    x = torch.einsum("nirstpqc->ncitrpsq", x)  # [N, C, T', t, H', p, W', p]
    return x.reshape(x.shape[0], c, gt * t, gh * p, gw * p)


class TubeletEmbed(nn.Module):
    """Tubelet embedding: a Conv3d with kernel and stride ``(t, p, p)``, tokens time-major.

    The projection is called ``proj`` as timm's ``PatchEmbed`` calls its Conv2d.

    Args:
        img_size: frame side in pixels.
        patch_size: p.
        num_frames: T, frames per clip.
        tubelet_size: t, frames per tubelet.
        in_chans: C.
        embed_dim: D.
    """

    def __init__(self, img_size: int, patch_size: int, num_frames: int, tubelet_size: int, in_chans: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.time_size = num_frames // tubelet_size
        self.num_patches = self.time_size * self.grid_size[0] * self.grid_size[1]
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, clips: Tensor) -> Tensor:
        """[N, C, T, H, W] -> [N, L, D]."""
        x = self.proj(clips)  # [N, D, T', H', W']
        return x.flatten(2).transpose(1, 2)  # [N, T'*H'*W', D], time-major
