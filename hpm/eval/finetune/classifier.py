"""The fine-tuned classifier: a timm ViT built from the encoder, its top-1, and how timm rebuilds it."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from hpm.data import collate_skip_none
from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, autocast
from hpm.eval.data import EvalData
from hpm.eval.recipes import FinetuneConfig
from hpm.models.mae import MaskedAutoencoder
from hpm.models.timm_encoder import build_timm_encoder, timm_spec


def build_classifier(encoder: MaskedAutoencoder, num_classes: int, cfg: FinetuneConfig, device: torch.device) -> nn.Module:
    """The encoder as a timm ``VisionTransformer`` pooled as ``cfg.global_pool`` says, with a fresh linear head."""
    model = build_timm_encoder(encoder, global_pool=cfg.global_pool, num_classes=num_classes,
                               drop_path_rate=cfg.drop_path)
    nn.init.trunc_normal_(model.head.weight, std=cfg.head_init_std)
    nn.init.zeros_(model.head.bias)
    model.set_grad_checkpointing(False)
    return model.to(device).train()


@torch.no_grad()
def shard_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    """This process's share of ``dataset`` (every ``world_size``-th sample from its rank), in order,
    unreadable samples skipped."""
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if joined else (0, 1)
    shard = Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]
    return DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=collate_skip_none)


def evaluate_classifier(
    model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, precision: Resolved
) -> tuple[float, int]:
    """Top-1 accuracy (in %) and the number of images, summed over all processes.

    Each process evaluates every ``world_size``-th image of ``dataset``.
    """
    loader = shard_loader(dataset, batch_size)
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)  # correct, seen
    for images, labels, _ in loader:
        if images.shape[0] == 0:
            continue
        with autocast(device, precision):
            logits = model(images.to(device))  # [B, C]
        counts[0] += (logits.argmax(1).cpu() == labels).sum().item()
        counts[1] += labels.shape[0]
    model.train(was_training)
    counts = D.all_reduce_sum(counts)
    return 100.0 * float(counts[0]) / max(float(counts[1]), 1.0), int(counts[1])


def classifier_spec(
    encoder: MaskedAutoencoder, data: EvalData, global_pool: Literal["avg", "token"] = "avg"
) -> dict[str, Any]:
    """How to rebuild the fine-tuned classifier with timm, and what it expects as input.

    Returns:
        ``timm_model`` and ``timm_kwargs`` (the encoder's shape, ``global_pool``,
        ``num_classes`` and a ``pretrained_cfg`` that describes this classifier: its classes,
        input size, normalisation and head, so that ``timm.create_model(timm_model,
        pretrained=True, pretrained_cfg_overlay=dict(file=...), **timm_kwargs)`` keeps the
        head), plus ``mean``, ``std`` and ``class_names``.
    """
    name, kwargs = timm_spec(encoder.cfg, global_pool=global_pool, num_classes=data.num_classes)
    kwargs["pretrained_cfg"] = {
        "architecture": name,
        "input_size": [data.channels, data.img_size, data.img_size],
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": list(data.mean),
        "std": list(data.std),
        "num_classes": data.num_classes,
        "label_names": list(data.classes),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return {
        "timm_model": name,
        "timm_kwargs": kwargs,
        "mean": list(data.mean),
        "std": list(data.std),
        "class_names": list(data.classes),
    }
