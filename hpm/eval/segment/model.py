"""The segmentation model: the encoder as a timm ViT, then a UperNet head on a feature pyramid
of four blocks, or a linear (1x1 convolution) head on the frozen last block."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import Tensor, nn

from hpm.eval.segment.pyramid import FeaturePyramid
from hpm.eval.segment.recipes import SegmentConfig
from hpm.models.mae import MaskedAutoencoder
from hpm.models.timm_encoder import build_timm_encoder

PYRAMID_LEVELS = 4


def block_indices(depth: int, count: int = PYRAMID_LEVELS) -> list[int]:
    """``count`` evenly spaced blocks, the last one included (depth 12: 2, 5, 8, 11)."""
    return [max(0, -(-depth * (i + 1) // count) - 1) for i in range(count)]


def _prefixed(pattern: str) -> str:
    """A timm group pattern (anchored at the ViT's names) anchored at ``encoder.``."""
    return r"^encoder\.(?:" + pattern.removeprefix("^") + ")"


class Segmenter(nn.Module):
    """Per-pixel class logits ``[N, num_classes, H, W]`` of ``[N, C, H, W]`` images.

    ``upernet``: the outputs of four evenly spaced blocks (:func:`block_indices`), as a pyramid
    (:class:`~hpm.eval.segment.pyramid.FeaturePyramid`), through segmentation_models_pytorch's
    UperNet decoder (PPM + FPN, at 4x the patch grid) and a 1x1 classifier. ``linear``: a 1x1
    classifier on the normalised last block of the frozen encoder. Both upsample the logits
    bilinearly to the image size.
    """

    def __init__(self, vit: nn.Module, cfg: SegmentConfig) -> None:
        super().__init__()
        dim, depth = vit.embed_dim, len(vit.blocks)
        self.head_kind = cfg.head
        self.frozen = cfg.head == "linear"
        self.indices = block_indices(depth) if cfg.head == "upernet" else [depth - 1]
        self.taken = sorted(set(self.indices))  # a shallow encoder repeats blocks: each is taken once
        vit.prune_intermediate_layers(self.taken, prune_norm=not self.frozen, prune_head=True)
        self.encoder = vit.requires_grad_(not self.frozen)
        if cfg.head == "upernet":
            self.pyramid = FeaturePyramid(dim)
            # smp's decoder reads the maps at 1/4 ... 1/32 of the image after two of 1/1 and 1/2
            self.decoder = UPerNetDecoder([dim] * (PYRAMID_LEVELS + 2), encoder_depth=PYRAMID_LEVELS + 1,
                                          decoder_channels=cfg.decoder_channels)
            self.dropout = nn.Dropout2d(0.1)
            self.classifier = nn.Conv2d(cfg.decoder_channels, cfg.num_classes, kernel_size=1)
        else:
            self.classifier = nn.Conv2d(dim, cfg.num_classes, kernel_size=1)

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """The chosen blocks' patch tokens as maps: one ``[N, D, h, w]`` per index."""
        maps = self.encoder.forward_intermediates(
            images, indices=self.taken, norm=self.frozen, output_fmt="NCHW", intermediates_only=True
        )
        by_block = dict(zip(self.taken, maps, strict=True))
        return [by_block[i] for i in self.indices]

    def forward_head(self, features: list[Tensor]) -> Tensor:
        """Class logits at the resolution of the head: ``[N, num_classes, h', w']``."""
        if self.head_kind == "linear":
            return self.classifier(features[0])
        pyramid = self.pyramid(features)  # 4x, 2x, 1x, 1/2x the patch grid
        return self.classifier(self.dropout(self.decoder([pyramid[0], pyramid[0], *pyramid])))

    def forward(self, images: Tensor) -> Tensor:
        logits = self.forward_head(self.forward_features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)  # [N, K, H, W]

    def train(self, mode: bool = True) -> Segmenter:
        """Train mode for what is trained; a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The ViT's layer groups under ``encoder.`` (layer-wise lr decay); the head's parameters
        match none and take the top layer's lr."""
        groups = self.encoder.group_matcher(coarse)
        return {
            name: _prefixed(rule) if isinstance(rule, str) else [(_prefixed(p), order) for p, order in rule]
            for name, rule in groups.items()
        }

    def no_weight_decay(self) -> set[str]:
        """The ViT's parameters without weight decay (position embedding, class token) under ``encoder.``."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}


def build_segmenter(encoder: MaskedAutoencoder, cfg: SegmentConfig) -> Segmenter:
    """The segmentation model of ``encoder`` (its weights copied into a timm ViT) for ``cfg``."""
    drop_path = 0.0 if cfg.head == "linear" else cfg.drop_path
    vit = build_timm_encoder(encoder, global_pool="token", num_classes=0, drop_path_rate=drop_path)
    return Segmenter(vit, cfg).train()
