"""ViTDet's backbone: a plain ViT's last block as a map, and its simple feature pyramid."""

from __future__ import annotations

from collections import OrderedDict

from timm.layers import LayerNorm2d
from torch import Tensor, nn


def _output_conv(in_dim: int, out_dim: int) -> nn.Sequential:
    """ViTDet's per-level head: 1x1 then 3x3 convolution to ``out_dim``, each followed by LayerNorm."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size=1, bias=False),
        LayerNorm2d(out_dim),
        nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_dim),
    )


class SimplePyramid(nn.Module):
    """One ``[B, D, h, w]`` map (patch grid ``h x w``, stride ``p``) -> four ``[B, out_channels, .]``
    maps at strides ``p/4``, ``p/2``, ``p`` and ``2p``: two deconvolutions (LayerNorm and GELU between),
    one deconvolution, the identity and a 2x2 max-pool, each then :func:`_output_conv`."""

    def __init__(self, dim: int, out_channels: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList([
            nn.Sequential(
                nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
                LayerNorm2d(dim // 2),
                nn.GELU(),
                nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
            ),
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        ])
        widths = (dim // 4, dim // 2, dim, dim)
        self.outputs = nn.ModuleList([_output_conv(w, out_channels) for w in widths])

    def forward(self, features: Tensor) -> list[Tensor]:
        """``features`` ``[B, D, h, w]`` -> ``[B, C, 4h, 4w]``, ``[B, C, 2h, 2w]``, ``[B, C, h, w]``,
        ``[B, C, h/2, w/2]``."""
        return [out(scale(features)) for scale, out in zip(self.scales, self.outputs, strict=True)]


class ViTDetBackbone(nn.Module):
    """A timm ViT and :class:`SimplePyramid`, in the interface of torchvision's ``BackboneWithFPN``:
    ``out_channels`` and an ``OrderedDict`` of maps named ``"0"`` (finest) to ``"3"``.

    Args:
        vit: A timm ``VisionTransformer`` (``dynamic_img_size=True`` for inputs of any multiple of its patch).
        out_channels: The pyramid's width.
    """

    def __init__(self, vit: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.vit = vit
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.out_channels = out_channels
        self.pyramid = SimplePyramid(vit.embed_dim, out_channels)

    @property
    def strides(self) -> tuple[int, ...]:
        """The pyramid levels' strides in pixels: ``p/4, p/2, p, 2p``."""
        p = self.patch_size
        return (p // 4, p // 2, p, 2 * p)

    def forward_features(self, images: Tensor) -> Tensor:
        """The last block's patch tokens as a ``[B, D, H/p, W/p]`` map."""
        (tokens,) = self.vit.forward_intermediates(images, indices=[len(self.vit.blocks) - 1], norm=False,
                                                  output_fmt="NCHW", intermediates_only=True)
        return tokens

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        levels = self.pyramid(self.forward_features(images))
        return OrderedDict((str(i), level) for i, level in enumerate(levels))
