"""The video masked autoencoder: tubelet tokens, spatio-temporal positions, presets, targets."""

from __future__ import annotations

import pytest
import torch

from hpm.config import VIDEO_PRESETS, build_config
from hpm.errors import ConfigError
from hpm.losses.targets import build_target
from hpm.masking import random_mask
from hpm.models import build_model
from hpm.models.mae import MaskedAutoencoder
from hpm.models.pos_embed import spacetime_split, sincos_3d_pos_embed_with_cls
from hpm.models.tubelet import patchify_clips, unpatchify_clips

TINY = {"preset": "video_small", "in_chans": 2, "num_frames": 4, "tubelet_size": 2, "img_size": 8,
        "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
        "decoder_depth": 1, "decoder_num_heads": 2}


def _model(**model: object) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return build_model(build_config(overrides={"model": {**TINY, **model}}).model)


def _clips(n: int = 2, c: int = 2, t: int = 4, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, t, side, side, generator=torch.Generator().manual_seed(seed))  # [N, C, T, H, W]


def test_patchify_round_trip_and_time_major_layout() -> None:
    clips = torch.randn(2, 3, 6, 8, 12, generator=torch.Generator().manual_seed(1))  # [N, C, T, H, W]
    tokens = patchify_clips(clips, patch_size=4, tubelet_size=2)  # [N, 3 * 2 * 3, 2*4*4*3]
    assert tokens.shape == (2, 18, 96)
    torch.testing.assert_close(unpatchify_clips(tokens, (3, 2, 3), 4, 2, 3), clips, rtol=0, atol=0)
    for i, r, c in ((0, 0, 0), (1, 1, 2), (2, 0, 1)):
        cell = clips[:, :, 2 * i:2 * i + 2, 4 * r:4 * r + 4, 4 * c:4 * c + 4]  # [N, C, t, p, p]
        expected = cell.permute(0, 2, 3, 4, 1).reshape(2, -1)  # (frame, row, col, channel)
        torch.testing.assert_close(tokens[:, i * 6 + r * 3 + c], expected, rtol=0, atol=0)


def test_model_patchify_is_the_tubelet_layout_of_its_embedding() -> None:
    """The Conv3d embedding of token i is a linear map of patchify's token i: targets and tokens align."""
    model = _model()
    clips = _clips()
    assert model.num_patches == 2 * 2 * 2 and model.time_size == 2 and model.grid_size == (2, 2)
    torch.testing.assert_close(model.unpatchify(model.patchify(clips)), clips, rtol=0, atol=0)
    proj = model.patch_embed.proj
    assert isinstance(proj, torch.nn.Conv3d) and proj.kernel_size == (2, 4, 4) and proj.stride == (2, 4, 4)
    weight = proj.weight.permute(0, 2, 3, 4, 1).reshape(proj.out_channels, -1)  # [D, t*p*p*C]
    with torch.no_grad():
        torch.testing.assert_close(model.patch_embed(clips), model.patchify(clips) @ weight.T + proj.bias)


def test_positions_shape_and_time_part_differs_between_frames() -> None:
    grid, dim = (4, 2, 3), 64
    pos = sincos_3d_pos_embed_with_cls(grid, dim)
    assert pos.shape == (1, 1 + 24, dim) and torch.count_nonzero(pos[0, 0]) == 0
    space_dim, time_dim = spacetime_split(dim)
    assert space_dim % 4 == 0 and space_dim + time_dim == dim and time_dim >= dim // 4
    tokens = pos[0, 1:].view(4, 6, dim)  # [T', H'*W', dim]
    space, time = tokens[..., :space_dim], tokens[..., space_dim:]
    assert torch.equal(space[0], space[3])  # the same cell at two times: same spatial part
    assert torch.equal(time[1, 0], time[1, 5])  # one time step: same temporal part in every cell
    for t in range(3):
        assert not torch.allclose(time[t, 0], time[t + 1, 0])
    assert not torch.allclose(space[0, 0], space[0, 1])
    assert len({tuple(row.tolist()) for row in pos[0, 1:]}) == 24  # every token its own position


def test_forward_shapes_and_targets_per_tubelet() -> None:
    model = _model()
    clips = _clips()
    masks = random_mask(torch.rand(2, 8, generator=torch.Generator().manual_seed(2)), 6)
    out = model(clips, masks.ids_keep, masks.ids_mask)
    assert out.pred.shape == (2, 6, 2 * 4 * 4 * 2) and out.scores.shape == (2, 8)
    cfg = build_config(overrides={"model": TINY})
    target = build_target(cfg)
    assert target.dim == model.target_dim == 64
    got = target(clips, masks.ids_mask)  # [N, K, 64]
    tokens = torch.gather(model.patchify(clips), 1, masks.ids_mask.unsqueeze(-1).expand(-1, -1, 64))
    mean, var = tokens.mean(-1, keepdim=True), tokens.var(-1, keepdim=True)
    torch.testing.assert_close(got, (tokens - mean) / (var + 1e-6) ** 0.5)


def test_encoder_sees_only_visible_tubelets() -> None:
    model = _model().eval()
    clips = _clips(seed=3)
    masks = random_mask(torch.rand(2, 8, generator=torch.Generator().manual_seed(4)), 5)
    with torch.no_grad():
        ref = model.forward_encoder(clips, masks.ids_keep)
        assert ref.shape == (2, 1 + 3, 32)
        tokens = model.patchify(clips)
        idx = masks.ids_mask.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
        changed = model.unpatchify(tokens.scatter(1, idx, torch.randn(2, 5, tokens.shape[-1]) * 10))
        torch.testing.assert_close(model.forward_encoder(changed, masks.ids_keep), ref, rtol=0, atol=0)
        tokens[0, masks.ids_keep[0, 0]] += 1.0
        assert not torch.allclose(model.forward_encoder(model.unpatchify(tokens), masks.ids_keep), ref)


@pytest.mark.parametrize(("preset", "tokens"), [("video_small", 512), ("video_b16", 1568)])
def test_video_presets(preset: str, tokens: int) -> None:
    cfg = build_config(overrides={"model": {"preset": preset, "in_chans": 3}, "mask": {"ratio": 0.9}}).model
    assert cfg.num_frames == VIDEO_PRESETS[preset]["num_frames"] == 16 and cfg.tubelet_size == 2
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.num_patches == tokens and model.pos_embed.shape == (1, 1 + tokens, cfg.embed_dim)
    assert model.target_dim == 2 * cfg.patch_size**2 * 3


def test_num_frames_must_be_a_multiple_of_the_tubelet() -> None:
    with pytest.raises(ConfigError, match=r"num_frames \(15\) must be a positive multiple of tubelet_size \(2\)"):
        build_config(overrides={"model": {"preset": "video_small", "num_frames": 15}})
    with pytest.raises(ConfigError, match="tubelet_size must be >= 1"):
        build_config(overrides={"model": {"preset": "video_small", "tubelet_size": 0}})


def test_image_targets_of_a_video_model_are_refused() -> None:
    for target in ("hog", "model"):
        extra = {"target_weights": "/nonexistent.safetensors"} if target == "model" else {}
        cfg = build_config(overrides={"model": TINY, "loss": {"target": target, **extra}})
        with pytest.raises(ConfigError, match=f"loss.target={target} reads images"):
            build_target(cfg)


def test_an_image_model_is_unchanged() -> None:
    """No num_frames: the 2-D patch embedding and positions, as before."""
    torch.manual_seed(0)
    model = build_model(build_config(overrides={"model": {"in_chans": 1}}).model)
    assert not model.is_video and model.time_size == 1 and model.num_patches == 64
    assert type(model.patch_embed).__name__ == "PatchEmbed" and model.target_dim == 16
