"""ViTDet's backbone: the simple pyramid's strides and shapes, and the anchors fitted to them."""

from __future__ import annotations

import timm
import torch

from hpm.eval.detect import SimplePyramid, ViTDetBackbone, build_detect_config
from hpm.eval.detect.model import anchor_generator


def test_the_pyramid_gives_four_levels_at_4_2_1_and_half_the_grid() -> None:
    maps = SimplePyramid(dim=32, out_channels=16)(torch.randn(2, 32, 6, 8))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 24, 32), (2, 16, 12, 16), (2, 16, 6, 8), (2, 16, 3, 4)]


def test_the_backbone_reads_the_last_block_at_strides_p4_p2_p_2p() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=0,
                            dynamic_img_size=True, depth=2)
    backbone = ViTDetBackbone(vit, out_channels=24)
    assert backbone.strides == (4, 8, 16, 32) and backbone.out_channels == 24
    features = backbone(torch.randn(1, 3, 64, 128))  # any multiple of 2p, not only the ViT's 64 x 64
    assert list(features) == ["0", "1", "2", "3"]
    for (name, level), stride in zip(features.items(), backbone.strides, strict=True):
        assert level.shape == (1, 24, 64 // stride, 128 // stride), name
    assert backbone.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 192, 4, 4)  # [B, D, H/p, W/p]


def test_anchors_are_one_size_per_level_scaled_from_its_stride() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=0, depth=1)
    cfg = build_detect_config("small", ["anchor_scale=4"])
    anchors = anchor_generator(ViTDetBackbone(vit, 8), cfg)
    assert anchors.sizes == ((16.0,), (32.0,), (64.0,), (128.0,))
    assert anchors.num_anchors_per_location() == [3, 3, 3, 3]
