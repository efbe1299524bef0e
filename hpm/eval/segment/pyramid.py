"""A ViT's single-scale features as a four-level pyramid (BEiT / MAE segmentation)."""

from __future__ import annotations

from torch import Tensor, nn


class FeaturePyramid(nn.Module):
    """Four ``[N, D, h, w]`` block outputs (patch grid ``h x w``) -> maps at 4, 2, 1 and 1/2 times the
    grid: two stride-2 deconvolutions (BatchNorm and GELU between), one deconvolution, the identity
    and a 2x2 max-pool."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.same = nn.Identity()
        self.down2 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """``features``: four ``[N, D, h, w]`` maps, shallowest first -> ``[N, D, 4h, 4w]``,
        ``[N, D, 2h, 2w]``, ``[N, D, h, w]``, ``[N, D, h/2, w/2]``."""
        levels = (self.up4, self.up2, self.same, self.down2)
        return [level(f) for level, f in zip(levels, features, strict=True)]
