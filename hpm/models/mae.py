"""Masked autoencoder with HPM's loss-predictor branch.

The encoder's parameter names match timm's ``VisionTransformer`` (``patch_embed``, ``cls_token``,
``pos_embed``, ``blocks``, ``norm``) so it exports to ``timm.create_model`` unchanged.
Two decoders of the same shape share the decoder input projection, mask token and decoder
position embeddings: the reconstructor (``decoder_*``) predicts the pixels of masked patches,
the loss predictor (``predictor_*``) outputs one score per patch (HPM).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from hpm.config import Config, ModelConfig
from hpm.models.cls_attention import cls_attention
from hpm.models.pos_embed import sincos_3d_pos_embed_with_cls, sincos_pos_embed_with_cls
from hpm.models.tubelet import TubeletEmbed, patchify_clips, unpatchify_clips

_norm = partial(nn.LayerNorm, eps=1e-6)


class MaeOutput(NamedTuple):
    """What one student forward pass returns."""

    pred: Tensor  # [N, K, P] reconstruction of the masked patches (P: the target's width, patch_size² · C for pixels)
    scores: Tensor | None  # [N, L] loss-predictor scores for every patch, or None


def _blocks(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    return nn.ModuleList(
        Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=_norm) for _ in range(depth)
    )


def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """[N, C, H, W] -> [N, L, p*p*C] (row-major patches, channels last within a patch)."""
    p = patch_size
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def _positions(grid: tuple[int, int], time_size: int, video: bool, dim: int) -> Tensor:
    """Fixed sin-cos positions, class-token row first: 2-D for images, 3-D for video. [1, 1 + L, dim]."""
    if video:
        return sincos_3d_pos_embed_with_cls((time_size, *grid), dim)
    return sincos_pos_embed_with_cls(grid, dim)


class MaskedAutoencoder(nn.Module):
    """ViT masked autoencoder (MAE) with an optional loss-predictor decoder (HPM).

    With ``cfg.num_frames`` set the model takes clips [N, C, T, H, W]: a Conv3d tubelet
    embedding (:class:`~hpm.models.tubelet.TubeletEmbed`) makes time-major tokens with 3-D
    sin-cos positions; everything after the embedding is the image model's code, per token.

    Args:
        cfg: resolved model config (``in_chans`` must be set).
        loss_predictor: build the loss-predictor branch.
        target_dim: width of one patch's reconstruction target (``loss.target_dim``); None:
            the patch's pixels, ``patch_size² · in_chans``.
    """

    def __init__(self, cfg: ModelConfig, loss_predictor: bool = True, target_dim: int | None = None) -> None:
        super().__init__()
        if cfg.in_chans is None:
            raise ValueError("model.in_chans must be resolved before building the model")
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.in_chans = cfg.in_chans
        # --- encoder (timm VisionTransformer names) ---
        self.is_video = cfg.num_frames is not None
        self.tubelet_size = cfg.tubelet_size if self.is_video else 1
        self.patch_embed: nn.Module = (
            TubeletEmbed(cfg.img_size, cfg.patch_size, cfg.num_frames, cfg.tubelet_size, cfg.in_chans, cfg.embed_dim)
            if cfg.num_frames is not None
            else PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        )
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)  # type: ignore[assignment]
        self.time_size: int = getattr(self.patch_embed, "time_size", 1)  # tubelet positions in time (1: images)
        self.num_patches = self.time_size * self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.register_buffer("pos_embed", _positions(self.grid_size, self.time_size, self.is_video, cfg.embed_dim))
        self.blocks = _blocks(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.norm = _norm(cfg.embed_dim)
        # --- shared decoder input ---
        dd = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", _positions(self.grid_size, self.time_size, self.is_video, dd))
        # --- reconstructor ---
        self.decoder_blocks: nn.ModuleList | None = _blocks(
            dd, cfg.decoder_depth, cfg.decoder_num_heads, cfg.mlp_ratio
        )
        self.decoder_norm: nn.Module | None = _norm(dd)
        self.target_dim = target_dim or cfg.patch_size**2 * cfg.in_chans * self.tubelet_size
        self.decoder_pred: nn.Module | None = nn.Linear(dd, self.target_dim)
        # --- loss predictor (HPM) ---
        self.has_predictor = loss_predictor
        if loss_predictor:
            self.predictor_blocks = _blocks(
                dd,
                cfg.predictor_depth or cfg.decoder_depth,
                cfg.predictor_num_heads or cfg.decoder_num_heads,
                cfg.mlp_ratio,
            )
            self.predictor_norm = _norm(dd)
            self.predictor_pred = nn.Linear(dd, 1)
        self._init_weights()

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_fused_attention(self, enabled: bool) -> None:
        """Use PyTorch's fused attention kernel (True) or plain matmul attention (False)."""
        for module in self.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = enabled

    def drop_reconstructor(self) -> None:
        """Remove the reconstruction decoder (an EMA teacher only scores patches)."""
        self.decoder_blocks = self.decoder_norm = self.decoder_pred = None

    # ------------------------------------------------------------ patches
    def patchify(self, imgs: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, L, p*p*C] (row-major patches, channels last within a patch);
        video: [N, C, T, H, W] -> [N, L, t*p*p*C] (:func:`~hpm.models.tubelet.patchify_clips`)."""
        if self.is_video:
            return patchify_clips(imgs, self.patch_size, self.tubelet_size)
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        """[N, L, p*p*C] -> [N, C, H, W] (inverse of :meth:`patchify`); video: -> [N, C, T, H, W]."""
        if self.is_video:
            grid = (self.time_size, *self.grid_size)
            return unpatchify_clips(x, grid, self.patch_size, self.tubelet_size, self.in_chans)
        p, c = self.patch_size, self.in_chans
        gh, gw = self.grid_size
        x = x.reshape(x.shape[0], gh, gw, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, gh * p, gw * p)

    # ------------------------------------------------------------ stages
    def forward_encoder(self, imgs: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Encode the visible patches (all patches when ``ids_keep`` is None).

        Args:
            imgs: [N, C, H, W].
            ids_keep: [N, Lk] indices of the visible patches.

        Returns:
            [N, 1 + Lk, D] normalised tokens, class token first.
        """
        x = self._embed(imgs, ids_keep)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def _embed(self, imgs: Tensor, ids_keep: Tensor | None) -> Tensor:
        """Patch + position embeddings of the visible patches, class token first: [N, 1 + Lk, D]."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]  # [N, L, D]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    @torch.no_grad()
    def attention_scores(self, imgs: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """AttMask's score: the class token's attention over the visible patches in the last
        encoder block, averaged over heads (:func:`~hpm.models.cls_attention.cls_attention`).

        Args:
            imgs: [N, C, H, W].
            ids_keep: [N, Lk] visible patches (None: the whole image).

        Returns:
            float32 [N, Lk], in the order of ``ids_keep`` (patch order for the whole image).
        """
        x = self._embed(imgs, ids_keep)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return cls_attention(self.blocks[-1], x)

    def forward_decoder_input(self, latent: Tensor, ids_restore: Tensor | None = None) -> Tensor:
        """Project encoder tokens, insert mask tokens, add decoder position embeddings.

        Args:
            latent: [N, 1 + Lk, D] encoder output.
            ids_restore: [N, L] position in (visible ++ masked) order of each patch;
                None when every patch was visible.

        Returns:
            [N, 1 + L, Dd] decoder input (shared by both decoders).
        """
        x = self.decoder_embed(latent)
        if ids_restore is not None:
            n, l = ids_restore.shape
            masks = self.mask_token.expand(n, l + 1 - x.shape[1], -1)
            tokens = torch.cat([x[:, 1:], masks], dim=1)  # [N, L, Dd] visible then masked
            tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1], tokens], dim=1)
        return x + self.decoder_pos_embed

    def forward_decoder(self, x: Tensor, ids_mask: Tensor) -> Tensor:
        """Reconstructor: [N, 1 + L, Dd] -> [N, K, p*p*C] predictions for the masked patches."""
        if self.decoder_blocks is None:
            raise RuntimeError("this model has no reconstruction decoder (it is a teacher)")
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x[:, 1:])  # [N, L, Dd]
        x = torch.gather(x, 1, ids_mask.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.decoder_pred(x)

    def forward_loss_predictor(self, x: Tensor) -> Tensor:
        """Loss predictor: [N, 1 + L, Dd] -> [N, L] predicted (relative) reconstruction loss."""
        if not self.has_predictor:
            raise RuntimeError("this model was built without a loss predictor")
        for blk in self.predictor_blocks:
            x = blk(x)
        return self.predictor_pred(self.predictor_norm(x[:, 1:])).squeeze(-1)

    def forward(self, imgs: Tensor, ids_keep: Tensor, ids_mask: Tensor) -> MaeOutput:
        """Student pass: encode visible patches, reconstruct masked ones, score every patch.

        Args:
            imgs: [N, C, H, W].
            ids_keep: [N, L - K] visible patch indices.
            ids_mask: [N, K] masked patch indices.
        """
        x = self.forward_masked_input(imgs, ids_keep, ids_mask)
        pred = self.forward_decoder(x, ids_mask)
        scores = self.forward_loss_predictor(x) if self.has_predictor else None
        return MaeOutput(pred, scores)

    def forward_masked_input(self, imgs: Tensor, ids_keep: Tensor, ids_mask: Tensor) -> Tensor:
        """Encode the visible patches of a masked view and build the decoder input.

        Args:
            imgs: [N, C, H, W].
            ids_keep: [N, L - K] visible patch indices.
            ids_mask: [N, K] masked patch indices.

        Returns:
            [N, 1 + L, Dd] decoder input (mask tokens at the masked positions).
        """
        ids_restore = torch.argsort(torch.cat([ids_keep, ids_mask], dim=1), dim=1)  # [N, L]
        return self.forward_decoder_input(self.forward_encoder(imgs, ids_keep), ids_restore)

    @torch.no_grad()
    def score_patches(self, imgs: Tensor) -> Tensor:
        """Teacher pass on the full image: encoder + loss predictor only. [N, C, H, W] -> [N, L]."""
        x = self.forward_decoder_input(self.forward_encoder(imgs))
        return self.forward_loss_predictor(x)

    @torch.no_grad()
    def score_masked_view(self, imgs: Tensor, ids_keep: Tensor, ids_mask: Tensor) -> Tensor:
        """Teacher pass on a partial view: encoder on the visible patches + loss predictor,
        scores read at the masked positions (where the predictor is trained).

        Args:
            imgs: [N, C, H, W].
            ids_keep: [N, L - K] patches the view shows.
            ids_mask: [N, K] patches the view hides.

        Returns:
            [N, K] scores of the hidden patches, in the order of ``ids_mask``.
        """
        scores = self.forward_loss_predictor(self.forward_masked_input(imgs, ids_keep, ids_mask))  # [N, L]
        return torch.gather(scores, 1, ids_mask)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay besides biases and norms."""
        return {"cls_token", "mask_token"}


def build_model(cfg: ModelConfig, loss_predictor: bool = True, target_dim: int | None = None) -> MaskedAutoencoder:
    """Build the model of a resolved config (``target_dim``: ``loss.target_dim``, None for pixels)."""
    return MaskedAutoencoder(cfg, loss_predictor=loss_predictor, target_dim=target_dim)


def build_run_model(cfg: Config) -> MaskedAutoencoder:
    """The model a run's whole config describes: its shape, a loss predictor unless
    ``loss.predictor=none``, a reconstruction head as wide as ``loss.target_dim``."""
    return build_model(cfg.model, loss_predictor=cfg.loss.predictor != "none", target_dim=cfg.loss.target_dim)
