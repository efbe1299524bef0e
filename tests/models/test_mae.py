"""MaskedAutoencoder: patch layout, shapes for every preset, the asymmetric encoder, timm
compatibility, the loss-predictor branch and the teacher variant."""

from __future__ import annotations

import pytest
import timm
import torch

from hpm.config import PRESETS, build_config
from hpm.losses import patch_targets, reconstruction_loss, relative_loss
from hpm.masking import MaskIds, num_masked, random_mask
from hpm.models import MaeOutput, MaskedAutoencoder, build_model


def _model_cfg(**model):
    return build_config(overrides={"model": {"in_chans": 1, **model}}).model


def _build(seed: int = 0, loss_predictor: bool = True, **model) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return build_model(_model_cfg(**model), loss_predictor=loss_predictor).eval()


def _masks(n: int, num_patches: int, seed: int = 0, ratio: float = 0.75) -> MaskIds:
    g = torch.Generator().manual_seed(seed)
    return random_mask(torch.rand(n, num_patches, generator=g), num_masked(num_patches, ratio))


def _images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, size, size, generator=g)


@pytest.fixture(scope="module")
def small() -> MaskedAutoencoder:
    """The small preset, 1 channel: 32 px, patch 4, 8x8 = 64 patches."""
    return _build()


@pytest.fixture(scope="module")
def small_rgb() -> MaskedAutoencoder:
    return _build(in_chans=3)


# --------------------------------------------------------------------------- patches
@pytest.mark.parametrize("fixture", ["small", "small_rgb"])
def test_patchify_unpatchify_round_trip(fixture: str, request: pytest.FixtureRequest) -> None:
    model: MaskedAutoencoder = request.getfixturevalue(fixture)
    c = model.in_chans
    imgs = _images(3, c, 32, seed=1)
    patches = model.patchify(imgs)
    assert patches.shape == (3, 64, 4 * 4 * c)
    torch.testing.assert_close(model.unpatchify(patches), imgs, rtol=0, atol=0)
    x = torch.randn(3, 64, 16 * c, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model.patchify(model.unpatchify(x)), x, rtol=0, atol=0)


@pytest.mark.parametrize("fixture", ["small", "small_rgb"])
def test_patchify_layout_row_major_channels_last(fixture: str, request: pytest.FixtureRequest) -> None:
    """Patch i = r * grid_w + c holds the pixels of grid cell (r, c), channels last."""
    model: MaskedAutoencoder = request.getfixturevalue(fixture)
    p, ch = model.patch_size, model.in_chans
    gh, gw = model.grid_size
    imgs = _images(2, ch, 32, seed=3)
    patches = model.patchify(imgs)
    for r in range(gh):
        for c in range(gw):
            cell = imgs[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p]  # [N, C, p, p]
            expected = cell.permute(0, 2, 3, 1).reshape(2, -1)  # (row, col, channel) order
            torch.testing.assert_close(patches[:, r * gw + c], expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- shapes
def _check_shapes(model: MaskedAutoencoder, img: int, patch: int, chans: int, n: int = 1) -> None:
    num_patches = (img // patch) ** 2
    k = num_masked(num_patches, 0.75)
    assert model.num_patches == num_patches
    imgs = torch.randn(n, chans, img, img, device=model.cls_token.device)
    masks = _masks(n, num_patches)
    masks = MaskIds(masks.ids_keep.to(imgs.device), masks.ids_mask.to(imgs.device))
    out = model(imgs, masks.ids_keep, masks.ids_mask)
    assert isinstance(out, MaeOutput)
    assert out.pred.shape == (n, k, patch * patch * chans)
    assert out.scores is not None and out.scores.shape == (n, num_patches)
    assert model.score_patches(imgs).shape == (n, num_patches)
    if imgs.device.type != "meta":
        assert torch.isfinite(out.pred).all() and torch.isfinite(out.scores).all()


@pytest.mark.parametrize(
    "preset",
    [pytest.param(p, marks=pytest.mark.slow) if p == "vit_h14" else p for p in PRESETS],
)
def test_forward_shapes_every_preset(preset: str) -> None:
    """Real weights, batch 1. vit_h14 alone takes 10-25 s on 2 cores: slow."""
    cfg = build_config(overrides={"model": {"preset": preset, "in_chans": 3}}).model
    assert cfg.img_size == PRESETS[preset]["img_size"]
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        _check_shapes(model, cfg.img_size, cfg.patch_size, 3)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_forward_shapes_every_preset_meta(preset: str) -> None:
    """The same code on the meta device (shapes only): covers vit_h14 in the quick suite."""
    cfg = build_config(overrides={"model": {"preset": preset, "in_chans": 3}}).model
    with torch.device("meta"):
        model = build_model(cfg)
        _check_shapes(model, cfg.img_size, cfg.patch_size, 3)


def test_forward_shapes_odd_settings() -> None:
    """48 px, patch 8 (6x6 = 36 patches), 3 channels, batch 2, with autograd on."""
    model = _build(img_size=48, patch_size=8, in_chans=3)
    assert model.grid_size == (6, 6)
    _check_shapes(model, 48, 8, 3, n=2)
    imgs = _images(2, 3, 48)
    torch.testing.assert_close(model.unpatchify(model.patchify(imgs)), imgs, rtol=0, atol=0)


# --------------------------------------------------------------------------- encoder
def test_encoder_sees_only_visible_patches(small: MaskedAutoencoder) -> None:
    imgs = _images(2, 1, 32, seed=4)
    masks = _masks(2, 64, seed=5)
    with torch.no_grad():
        ref = small.forward_encoder(imgs, masks.ids_keep)
        assert ref.shape == (2, 1 + 64 - 48, small.cfg.embed_dim)
        # new pixels in every masked patch: the encoder output must not move
        patches = small.patchify(imgs)
        idx = masks.ids_mask.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        noise = torch.randn(2, 48, patches.shape[-1], generator=torch.Generator().manual_seed(6))
        changed = small.unpatchify(patches.scatter(1, idx, noise * 10))
        assert not torch.equal(changed, imgs)
        torch.testing.assert_close(small.forward_encoder(changed, masks.ids_keep), ref, rtol=0, atol=0)
        # control: changing one visible patch does change it
        vis = patches.clone()
        vis[0, masks.ids_keep[0, 0]] += 1.0
        assert not torch.allclose(small.forward_encoder(small.unpatchify(vis), masks.ids_keep), ref)


def test_encoder_keys_load_into_timm_vit_small() -> None:
    cfg = build_config(overrides={"model": {"preset": "vit_s16", "in_chans": 3}}).model
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ours = model.state_dict()
    tm = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, global_pool="token")
    theirs = tm.state_dict()
    assert theirs["pos_embed"].shape == ours["pos_embed"].shape == (1, 197, 384)
    missing = [k for k in theirs if k not in ours]
    assert not missing, f"timm keys absent from our model: {missing}"
    bad = [k for k in theirs if theirs[k].shape != ours[k].shape]
    assert not bad, f"shape mismatches: {bad}"
    prefixes = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
    encoder = [k for k in ours if k.startswith(prefixes)]
    assert set(encoder) == set(theirs), set(encoder) ^ set(theirs)
    tm.load_state_dict({k: ours[k] for k in theirs}, strict=True)
    tm.eval()
    imgs = _images(1, 3, 224, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(tm.forward_features(imgs), model.forward_encoder(imgs), atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- position embeddings
def test_position_embeddings_are_fixed_buffers(small: MaskedAutoencoder) -> None:
    params = dict(small.named_parameters())
    buffers = dict(small.named_buffers())
    for name, dim in (("pos_embed", small.cfg.embed_dim), ("decoder_pos_embed", small.cfg.decoder_embed_dim)):
        assert name not in params
        assert name in buffers and name in small.state_dict()
        pe = buffers[name]
        assert not pe.requires_grad
        assert pe.shape == (1, 1 + 64, dim)
        torch.testing.assert_close(pe[0, 0], torch.zeros(dim), rtol=0, atol=0)
        rows = pe[0, 1:]
        dist = torch.cdist(rows, rows) + torch.eye(64) * 1e9
        assert dist.min() > 1e-3, "two patches share a position embedding"


def test_position_embeddings_are_2d_separable(small: MaskedAutoencoder) -> None:
    """Each width depends only on the patch row or only on its column, as many of each."""
    gh, gw = small.grid_size
    grid = small.pos_embed[0, 1:].view(gh, gw, -1)  # row-major, like patchify
    row_only = (grid - grid[:, :1]).abs().amax(dim=(0, 1)) < 1e-6  # constant along columns
    col_only = (grid - grid[:1, :]).abs().amax(dim=(0, 1)) < 1e-6  # constant along rows
    assert bool((row_only | col_only).all())
    # (a few very low frequencies are flat both ways at 1e-6 on an 8x8 grid)
    strictly_row, strictly_col = int((row_only & ~col_only).sum()), int((col_only & ~row_only).sum())
    assert strictly_row == strictly_col > grid.shape[-1] // 4


# --------------------------------------------------------------------------- branches
def test_model_without_loss_predictor() -> None:
    model = _build(loss_predictor=False)
    assert not model.has_predictor
    assert not [n for n, _ in model.named_parameters() if n.startswith("predictor_")]
    with_pred = _build()
    assert [n for n, _ in with_pred.named_parameters() if n.startswith("predictor_")]
    masks = _masks(2, 64)
    out = model(_images(2, 1, 32), masks.ids_keep, masks.ids_mask)
    assert out.scores is None and out.pred.shape == (2, 48, 16)
    with pytest.raises(RuntimeError):
        model.score_patches(_images(1, 1, 32))


def test_drop_reconstructor_keeps_scoring() -> None:
    model = _build()
    imgs = _images(2, 1, 32, seed=8)
    before = model.score_patches(imgs)
    model.drop_reconstructor()
    assert not [k for k in model.state_dict() if k.startswith(("decoder_blocks", "decoder_norm", "decoder_pred"))]
    assert "decoder_embed.weight" in model.state_dict() and "mask_token" in model.state_dict()
    torch.testing.assert_close(model.score_patches(imgs), before)
    x = model.forward_decoder_input(model.forward_encoder(imgs))
    with pytest.raises(RuntimeError):
        model.forward_decoder(x, _masks(2, 64).ids_mask)


def test_loss_predictor_gradient_reaches_encoder() -> None:
    model = _build().train()
    imgs = _images(4, 1, 32, seed=9)
    masks = _masks(4, 64, seed=10)
    out = model(imgs, masks.ids_keep, masks.ids_mask)
    target = patch_targets(torch.gather(model.patchify(imgs), 1, masks.ids_mask.unsqueeze(-1).expand(-1, -1, 16)))
    _, per_patch = reconstruction_loss(out.pred, target)
    loss_pred = relative_loss(torch.gather(out.scores, 1, masks.ids_mask), per_patch)
    loss_pred.backward()  # the loss-prediction loss alone
    grad = model.blocks[0].attn.qkv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.predictor_pred.weight.grad.abs().sum() > 0
    # the real losses are constants: nothing flows into the reconstructor
    assert all(p.grad is None for p in model.decoder_blocks.parameters())
    assert model.decoder_pred.weight.grad is None


def test_fused_attention_matches_plain_attention() -> None:
    model = _build(seed=11)
    attn = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(attn) == 6 + 4 + 1  # encoder, reconstructor and predictor blocks (default: one)
    imgs = _images(2, 1, 32, seed=12)
    masks = _masks(2, 64, seed=13)
    with torch.no_grad():
        model.set_fused_attention(True)
        assert all(m.fused_attn for m in attn)
        fused = model(imgs, masks.ids_keep, masks.ids_mask)
        fused_scores = model.score_patches(imgs)
        model.set_fused_attention(False)
        assert not any(m.fused_attn for m in attn)
        plain = model(imgs, masks.ids_keep, masks.ids_mask)
        plain_scores = model.score_patches(imgs)
    torch.testing.assert_close(plain.pred, fused.pred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain.scores, fused.scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain_scores, fused_scores, atol=1e-5, rtol=1e-5)


def test_missing_in_chans_raises() -> None:
    cfg = build_config().model
    assert cfg.in_chans is None
    with pytest.raises(ValueError, match="in_chans"):
        build_model(cfg)


def test_decoder_input_restores_patch_order(small: MaskedAutoencoder) -> None:
    """Visible tokens go back to their own positions; masked positions get the mask token."""
    imgs = _images(2, 1, 32, seed=14)
    masks = _masks(2, 64, seed=15)
    ids_restore = torch.argsort(torch.cat([masks.ids_keep, masks.ids_mask], dim=1), dim=1)
    with torch.no_grad():
        latent = small.forward_encoder(imgs, masks.ids_keep)
        x = small.forward_decoder_input(latent, ids_restore) - small.decoder_pos_embed
        proj = small.decoder_embed(latent)
    for n in range(2):
        torch.testing.assert_close(x[n, 1:][masks.ids_keep[n]], proj[n, 1:])
        torch.testing.assert_close(x[n, 1:][masks.ids_mask[n]], small.mask_token[0].expand(48, -1))
        torch.testing.assert_close(x[n, 0], proj[n, 0])
