"""Frozen-encoder clip features (the class token or the mean of all tokens, averaged over the
test views) and the k-NN and linear probe on them (:mod:`hpm.eval.knn`, :mod:`hpm.eval.linear`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hpm.data import collate_skip_none
from hpm.engine.precision import Resolved, autocast
from hpm.errors import DataError
from hpm.eval.encoder import Pool, pool_tokens
from hpm.eval.knn import knn_classify
from hpm.eval.linear import LinearProbeConfig, probe_accuracy, train_linear_probe
from hpm.eval.video import feature_memo as memo
from hpm.eval.video.data import VideoEvalData
from hpm.eval.video.distinct import over_views
from hpm.models.mae import MaskedAutoencoder


@torch.no_grad()
def view_features(
    model: MaskedAutoencoder, dataset: Dataset, pool: Pool, batch_size: int = 16, device: torch.device | str = "cpu",
    precision: Resolved = "fp32", num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Pooled encoder features of every view of every readable video.

    Args:
        model: The frozen video masked autoencoder (its encoder on all tokens).
        dataset: ``(views [V, C, T, H, W], label)`` items (:class:`~hpm.eval.video.views.ClipViews`).
        pool: ``"cls"`` (class token) or ``"avg"`` (mean of the patch tokens).
        batch_size: Videos per forward pass (times ``V`` clips).
        device: Where the encoder runs.
        precision: Autocast precision.
        num_workers: DataLoader worker processes.

    Returns:
        ``(feats, labels)``: float32 ``[N, V, D]`` on the CPU and int64 ``[N]``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_skip_none)
    feats, labels = [], []
    for views, targets, _ in loader:  # views: [B, V, C, T, H, W]
        if views.shape[0] == 0:
            continue
        with autocast(device, precision):  # coinciding views are encoded once
            pooled = over_views(lambda clips: pool_tokens(model.forward_encoder(clips.to(device)), pool), views)
        pooled = pooled.float().cpu()  # [B * V, D]
        feats.append(pooled.view(views.shape[0], views.shape[1], -1))  # [B, V, D]
        labels.append(targets)
    model.train(was_training)
    if not feats:
        raise DataError("no readable video in the data set; nothing to evaluate")
    return torch.cat(feats), torch.cat(labels)


def clip_features(
    model: MaskedAutoencoder, data: VideoEvalData, pool: Pool, batch_size: int = 16,
    device: torch.device | str = "cpu", precision: Resolved = "fp32", num_workers: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train and test features, each the mean over its video's views -> train_x, train_y, test_x, test_y."""
    out: list[Tensor] = []
    for split in (data.train, data.test):
        feats, labels = view_features(model, data.views(split), pool, batch_size, device, precision, num_workers)
        out += [feats.mean(dim=1), labels]  # [N, D], [N]
    return out[0], out[1], out[2], out[3]


def _features(
    model: MaskedAutoencoder, data: VideoEvalData, pool: Pool, batch_size: int, device: torch.device | str,
    precision: Resolved, num_workers: int,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], bool]:
    """:func:`clip_features`, or the same features kept by an earlier protocol of this process ->
    ``(features, reused)``."""
    key = memo.features_key(model, data, pool, precision)
    kept = memo.recall(key)
    if kept is not None:
        return (kept[0], kept[1], kept[2], kept[3]), True
    feats = clip_features(model, data, pool, batch_size, device, precision, num_workers)
    memo.keep(key, feats)
    return feats, False


def run_video_knn(
    model: MaskedAutoencoder, data: VideoEvalData, ks: Sequence[int], pool: Pool, temperature: float,
    batch_size: int = 16, device: torch.device | str = "cpu", precision: Resolved = "fp32", num_workers: int = 0,
) -> dict[str, Any]:
    """Weighted k-NN of view-averaged clip features; the keys of :func:`hpm.eval.knn.run_knn` plus ``views``."""
    start = time.perf_counter()
    (train_x, train_y, test_x, test_y), reused = _features(model, data, pool, batch_size, device, precision,
                                                           num_workers)
    extracted = time.perf_counter()
    top1 = knn_classify(train_x, train_y, test_x, test_y, ks, temperature, data.num_classes)
    return {
        "top1": {str(k): v for k, v in top1.items()}, "pool": pool, "temperature": temperature, "ks": list(ks),
        "num_train": int(train_x.shape[0]), "num_test": int(test_x.shape[0]), "views": data.describe_views(),
        "features_reused": reused, "extract_s": round(extracted - start, 3), "knn_s": round(time.perf_counter() - extracted, 3),
    }


def run_video_linear(
    model: MaskedAutoencoder, data: VideoEvalData, pool: Pool, probe_cfg: LinearProbeConfig, batch_size: int = 16,
    device: torch.device | str = "cpu", precision: Resolved = "fp32", num_workers: int = 0,
) -> dict[str, Any]:
    """Linear probe on view-averaged clip features; the keys of :func:`hpm.eval.linear.run_linear` plus ``views``."""
    start = time.perf_counter()
    (train_x, train_y, test_x, test_y), reused = _features(model, data, pool, batch_size, device, precision,
                                                           num_workers)
    extracted = time.perf_counter()
    probe = train_linear_probe(train_x, train_y, data.num_classes, probe_cfg)
    lr = probe_cfg.blr * min(probe_cfg.batch_size, len(train_y)) / 256
    return {
        "top1": probe_accuracy(probe, test_x, test_y), "train_top1": probe_accuracy(probe, train_x, train_y),
        "pool": pool, "probe": {**asdict(probe_cfg), "optimizer": "sgd", "lr": lr},
        "num_train": int(train_x.shape[0]), "num_test": int(test_x.shape[0]), "views": data.describe_views(),
        "features_reused": reused, "extract_s": round(extracted - start, 3), "probe_s": round(time.perf_counter() - extracted, 3),
    }
