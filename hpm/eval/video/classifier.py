"""The video classifier a fine-tune trains: the pre-trained encoder on all tokens, the patch
tokens averaged under a fresh norm (VideoMAE's fine-tune with mean pooling) or the class token
under the pre-trained final norm, and a linear head; its multi-view top-1."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from timm.layers import DropPath
from torch import Tensor, nn
from torch.utils.data import Dataset

from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, autocast
from hpm.errors import ConfigError
from hpm.eval.finetune.classifier import shard_loader
from hpm.eval.video.distinct import over_views
from hpm.models.mae import MaskedAutoencoder


class VideoClassifier(nn.Module):
    """Clips ``[N, C, T, H, W]`` -> logits ``[N, num_classes]``.

    The encoder's tubelet embedding, class token, positions and blocks are copied (names as in
    the masked autoencoder, so timm's layer-wise lr decay groups them by ``group_matcher``). With
    ``global_pool="avg"`` the pre-trained final norm is replaced by ``fc_norm`` after the mean of
    the patch tokens, as VideoMAE and MAE fine-tune; with ``"token"`` the head reads the class
    token under the pre-trained final ``norm`` (what the k-NN and the linear probe read). Drop path
    grows linearly with depth up to ``drop_path``.

    Args:
        encoder: The pre-trained video masked autoencoder (not modified).
        num_classes: Classes of the head.
        drop_path: Stochastic depth rate of the last block.
        head_init_std: Standard deviation of the head's initial weights.
        global_pool: ``"avg"`` or ``"token"``.
    """

    def __init__(self, encoder: MaskedAutoencoder, num_classes: int, drop_path: float = 0.0,
                 head_init_std: float = 0.02, global_pool: Literal["avg", "token"] = "avg") -> None:
        super().__init__()
        if global_pool not in ("avg", "token"):
            raise ConfigError(f"unknown global_pool {global_pool!r}; use 'avg' or 'token'")
        self.global_pool = global_pool
        dim = encoder.cfg.embed_dim
        self.patch_embed = copy.deepcopy(encoder.patch_embed)
        self.cls_token = nn.Parameter(encoder.cls_token.detach().clone())
        self.register_buffer("pos_embed", encoder.pos_embed.detach().clone())  # fixed sin-cos
        self.blocks = copy.deepcopy(encoder.blocks)
        rates = torch.linspace(0, drop_path, len(self.blocks)).tolist() if len(self.blocks) > 1 else [drop_path]
        for block, rate in zip(self.blocks, rates):
            block.drop_path1 = DropPath(rate) if rate > 0 else nn.Identity()
            block.drop_path2 = DropPath(rate) if rate > 0 else nn.Identity()
        # the norm before the head: fresh after the mean, or the pre-trained one before the token
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if global_pool == "avg" else copy.deepcopy(encoder.norm)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)
        self.requires_grad_(True)

    def forward(self, clips: Tensor) -> Tensor:
        """[N, C, T, H, W] -> [N, num_classes]."""
        x = self.patch_embed(clips) + self.pos_embed[:, 1:]  # [N, L, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # [N, 1, D]
        x = torch.cat([cls, x], dim=1)  # [N, 1 + L, D]
        for block in self.blocks:
            x = block(x)
        pooled = x[:, 1:].mean(dim=1) if self.global_pool == "avg" else x[:, 0]  # [N, D]
        return self.head(self.fc_norm(pooled))  # [N, num_classes]

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer groups (as its ViT's): the embedding first, one per block, the head last."""
        return {"stem": r"^cls_token|^pos_embed|^patch_embed", "blocks": [(r"^blocks\.(\d+)", None)]}

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay besides biases and norms."""
        return {"cls_token"}


@torch.no_grad()
def evaluate_views(
    model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, precision: Resolved
) -> tuple[float, int]:
    """Top-1 accuracy (in %) with the softmax scores averaged over each video's views, and the
    number of videos, summed over all processes (each takes every ``world_size``-th video)."""
    loader = shard_loader(dataset, batch_size)
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)  # correct, seen
    for views, labels, _ in loader:  # views: [B, V, C, T, H, W]
        if views.shape[0] == 0:
            continue
        with autocast(device, precision):
            logits = over_views(lambda clips: model(clips.to(device)), views)  # [B * V, K], coinciding views once
        scores = logits.float().softmax(dim=-1).view(views.shape[0], views.shape[1], -1).mean(dim=1)  # [B, K]
        counts[0] += (scores.argmax(1).cpu() == labels).sum().item()
        counts[1] += labels.shape[0]
    model.train(was_training)
    counts = D.all_reduce_sum(counts)
    return 100.0 * float(counts[0]) / max(float(counts[1]), 1.0), int(counts[1])
