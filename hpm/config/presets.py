"""Model presets: encoder and decoder shapes by name (images, then video), and the timm names of the encoders."""

from __future__ import annotations

from typing import Any

# Shapes follow MAE / HPM: ViT encoders from timm, decoder 512 wide x 8 blocks x 16 heads.
_PAPER_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized default: 32 px, patch 4 (64 patches), 192 x 6 encoder, 128 x 4 decoders.
    "small": dict(
        img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
    ),
    # 64 px scenes (hpm data scenes) at the small widths: patch 8, again 64 patches.
    "small64": dict(
        img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
    ),
    "vit_s16": dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, **_PAPER_DECODER),
    "vit_b16": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, **_PAPER_DECODER),
    "vit_l16": dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16, **_PAPER_DECODER),
    "vit_h14": dict(img_size=224, patch_size=14, embed_dim=1280, depth=32, num_heads=16, **_PAPER_DECODER),
}
# Video presets (``model.num_frames`` set): a Conv3d tubelet embedding, spatio-temporal positions.
# Kept apart from PRESETS, which lists the image models; config resolution reads both.
VIDEO_PRESETS: dict[str, dict[str, Any]] = {
    # video (Moving Fashion-MNIST sized): 16 frames of 32 px, tubelets of 2 x 4 x 4 (8 x 8 x 8 = 512
    # tokens), the small widths.
    "video_small": dict(
        img_size=32, patch_size=4, num_frames=16, tubelet_size=2, embed_dim=192, depth=6, num_heads=3,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
    ),
    # VideoMAE's ViT-B: 16 frames of 224 px, tubelets of 2 x 16 x 16 (8 x 14 x 14 = 1568 tokens).
    "video_b16": dict(
        img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=768, depth=12, num_heads=12,
        **_PAPER_DECODER,
    ),
}
ALL_PRESETS: dict[str, dict[str, Any]] = {**PRESETS, **VIDEO_PRESETS}
# timm model names with the same encoder (used by export).
TIMM_NAMES = {
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_l16": "vit_large_patch16_224",
    "vit_h14": "vit_huge_patch14_224",
}
