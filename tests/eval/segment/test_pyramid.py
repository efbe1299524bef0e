"""The feature pyramid, the blocks it reads and the segmentation model's shapes and lr groups."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2

from hpm.eval.segment import FeaturePyramid, SegmentConfig, block_indices, build_segmenter
from hpm.models import build_model
from tests.eval.conftest import tiny_config


def test_pyramid_levels_are_4_2_1_and_half_the_patch_grid() -> None:
    pyramid = FeaturePyramid(8)
    features = [torch.randn(2, 8, 6, 4) for _ in range(4)]  # [N, D, h, w]
    shapes = [tuple(level.shape) for level in pyramid(features)]
    assert shapes == [(2, 8, 24, 16), (2, 8, 12, 8), (2, 8, 6, 4), (2, 8, 3, 2)]
    assert isinstance(pyramid.up4[1], torch.nn.BatchNorm2d) and isinstance(pyramid.up4[2], torch.nn.GELU)


def test_block_indices_are_evenly_spaced_and_end_at_the_last_block() -> None:
    assert block_indices(12) == [2, 5, 8, 11]
    assert block_indices(24) == [5, 11, 17, 23]
    assert block_indices(4) == [0, 1, 2, 3]
    assert block_indices(1) == [0, 0, 0, 0]


def test_segmenter_gives_logits_at_the_image_size_for_both_heads() -> None:
    encoder = build_model(tiny_config(in_chans=3, depth=4).model)
    images = torch.randn(2, 3, 32, 32)  # [N, C, H, W]
    upernet = build_segmenter(encoder, SegmentConfig(num_classes=5, decoder_channels=16))
    assert upernet.indices == [0, 1, 2, 3]
    features = upernet.forward_features(images)
    assert [tuple(f.shape) for f in features] == [(2, 32, 8, 8)] * 4  # patch 4: an 8 x 8 grid
    assert tuple(upernet.forward_head(features).shape) == (2, 5, 32, 32)  # the decoder works at 4x the grid
    assert tuple(upernet(images).shape) == (2, 5, 32, 32)
    linear = build_segmenter(encoder, SegmentConfig(head="linear", num_classes=5))
    assert tuple(linear(images).shape) == (2, 5, 32, 32)
    assert [n for n, p in linear.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    assert not linear.train().encoder.training  # the frozen encoder stays in eval mode


def test_layer_decay_scales_the_encoder_blocks_and_leaves_the_head_at_full_lr() -> None:
    encoder = build_model(tiny_config(in_chans=3, depth=2).model)
    model = build_segmenter(encoder, SegmentConfig(decoder_channels=16, layer_decay=0.5))
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["encoder.patch_embed.proj.weight"])] == 0.5 ** 3
    assert scale[id(named["encoder.blocks.0.attn.qkv.weight"])] == 0.5 ** 2
    assert scale[id(named["encoder.blocks.1.attn.qkv.weight"])] == 0.5
    assert scale[id(named["classifier.weight"])] == scale[id(named["pyramid.up2.weight"])] == 1.0
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(named["encoder.pos_embed"]) in no_decay and id(named["encoder.cls_token"]) in no_decay
