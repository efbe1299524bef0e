"""AttMask's score: the last block's [CLS]->patch attention, mean over heads."""

from __future__ import annotations

import torch

from hpm.config import build_config
from hpm.models import build_model


def _model(**model):
    torch.manual_seed(0)
    cfg = build_config(overrides={"model": {"in_chans": 1, "embed_dim": 48, "depth": 3, "num_heads": 3, **model}})
    return build_model(cfg.model).eval()


def _loop_over_heads(model, imgs: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
    """The same score computed the plain way: the block's own attention weights, head by head."""
    x = model._embed(imgs, ids_keep)
    for blk in model.blocks[:-1]:
        x = blk(x)
    blk = model.blocks[-1]
    y = blk.norm1(x)
    w_q, w_k, _ = blk.attn.qkv.weight.chunk(3)
    b_q, b_k, _ = blk.attn.qkv.bias.chunk(3)
    heads, hd = blk.attn.num_heads, blk.attn.head_dim
    total = torch.zeros(x.shape[0], x.shape[1] - 1)
    for h in range(heads):
        rows = slice(h * hd, (h + 1) * hd)
        q = y[:, 0] @ w_q[rows].T + b_q[rows]  # [N, hd] the class token's query
        k = y @ w_k[rows].T + b_k[rows]  # [N, T, hd]
        weights = torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / hd**0.5, dim=-1)  # [N, T]
        total += weights[:, 1:]
    return total / heads


def test_equals_a_plain_loop_over_heads() -> None:
    model = _model()
    imgs = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    scores = model.attention_scores(imgs)
    assert scores.shape == (5, 64) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, _loop_over_heads(model, imgs), rtol=1e-5, atol=1e-7)
    # rows are a softmax over 1 + L tokens without the class token's weight on itself
    assert bool((scores.sum(1) < 1).all()) and bool((scores > 0).all())


def test_on_a_partial_view_it_scores_the_shown_patches() -> None:
    model = _model()
    imgs = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    ids_keep = torch.rand(3, 64, generator=torch.Generator().manual_seed(3)).argsort(1)[:, :16]
    scores = model.attention_scores(imgs, ids_keep)
    assert scores.shape == (3, 16)
    torch.testing.assert_close(scores, _loop_over_heads(model, imgs, ids_keep), rtol=1e-5, atol=1e-7)


def test_matches_the_attention_the_block_computes() -> None:
    """timm's unfused attention path, captured at its dropout (identity in eval), agrees."""
    model = _model()
    model.set_fused_attention(False)
    captured = {}
    drop = model.blocks[-1].attn.attn_drop
    handle = drop.register_forward_hook(lambda m, inp, out: captured.setdefault("attn", out))
    imgs = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    model.forward_encoder(imgs)
    handle.remove()
    expected = captured["attn"][:, :, 0, 1:].mean(1)  # [N, L]
    torch.testing.assert_close(model.attention_scores(imgs), expected, rtol=1e-5, atol=1e-7)
