"""Weighted k-nearest-neighbour classification of frozen features (DINO / MAE protocol).

Features are L2-normalised; each test image takes the ``k`` train images of highest cosine
similarity and every neighbour votes for its class with weight ``exp(similarity / T)``
(T = 0.07). Top-1 accuracy is reported for each ``k``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hpm.config import Config
from hpm.engine.precision import Resolved, resolve_precision
from hpm.errors import ConfigError, DataError
from hpm.eval.data import EvalData
from hpm.eval.encoder import Pool, split_features, unwrap_model

DEFAULT_KS: tuple[int, ...] = (10, 20, 100, 200)
TEMPERATURE = 0.07
_MAX_SIM_ELEMENTS = 1 << 26  # similarity entries per test batch (256 MiB in fp32)


@torch.no_grad()
def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = TEMPERATURE,
    num_classes: int | None = None,
    batch_size: int | None = None,
) -> dict[int, Tensor]:
    """Predicted class of each test row for each ``k``.

    Args:
        train_feats: [N, D] memory bank (normalised here).
        train_labels: [N] integer labels.
        test_feats: [M, D] queries (normalised here).
        ks: Neighbourhood sizes; a ``k`` larger than N uses all N neighbours.
        temperature: T in the vote weight exp(similarity / T).
        num_classes: Number of classes (default: ``max(train_labels) + 1``).
        batch_size: Test rows per similarity matrix (default: as many as fit in 2^26 entries).

    Returns:
        ``{k: [M] int64 predictions}``.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D], got {tuple(train_feats.shape)} and {tuple(test_feats.shape)}")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"expected {train_feats.shape[0]} train labels, got shape {tuple(train_labels.shape)}")
    if not ks or min(ks) < 1:
        raise ConfigError(f"every k must be >= 1, got {list(ks)}")
    n = train_feats.shape[0]
    classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
    bank = F.normalize(train_feats.float(), dim=1)  # [N, D]
    labels = train_labels.long().to(bank.device)  # [N]
    k_max = min(max(ks), n)
    rows = batch_size or max(1, min(test_feats.shape[0], _MAX_SIM_ELEMENTS // max(n, 1)))
    preds: dict[int, list[Tensor]] = {k: [] for k in ks}
    for start in range(0, test_feats.shape[0], rows):
        query = F.normalize(test_feats[start : start + rows].float().to(bank.device), dim=1)  # [B, D]
        sim = query @ bank.T  # [B, N] cosine similarity
        top_sim, top_idx = sim.topk(k_max, dim=1)  # [B, k_max], sorted, most similar first
        weights = (top_sim / temperature).exp()  # [B, k_max]
        nbr_labels = labels[top_idx]  # [B, k_max]
        for k in ks:
            kk = min(k, n)
            votes = torch.zeros(query.shape[0], classes, device=bank.device)  # [B, C]
            votes.scatter_add_(1, nbr_labels[:, :kk], weights[:, :kk])
            preds[k].append(votes.argmax(dim=1).cpu())
    return {k: torch.cat(v) for k, v in preds.items()}


def knn_classify(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = TEMPERATURE,
    num_classes: int | None = None,
    batch_size: int | None = None,
) -> dict[int, float]:
    """Top-1 accuracy (in %) of weighted k-NN for each ``k``.

    Args:
        train_feats: [N, D] memory bank.
        train_labels: [N] its labels.
        test_feats: [M, D] queries.
        test_labels: [M] their labels.
        ks: Neighbourhood sizes (a ``k`` above N uses all N neighbours).
        temperature: Vote weight exp(similarity / T).
        num_classes: Number of classes (default: the largest label seen + 1).
        batch_size: Test rows per similarity matrix.

    Returns:
        ``{k: top-1 accuracy in percent}``.
    """
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(f"expected {test_feats.shape[0]} test labels, got shape {tuple(test_labels.shape)}")
    if num_classes is None:
        num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    preds = knn_predict(train_feats, train_labels, test_feats, ks, temperature, num_classes, batch_size)
    truth = test_labels.long().cpu()
    return {k: 100.0 * int((p == truth).sum()) / max(len(truth), 1) for k, p in preds.items()}


def run_knn(
    model: torch.nn.Module | None,
    data: EvalData,
    ks: Sequence[int] = DEFAULT_KS,
    pool: Pool = "cls",
    temperature: float = TEMPERATURE,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: Resolved = "fp32",
    num_workers: int = 0,
) -> dict[str, Any]:
    """Extract train and test features with a frozen encoder and classify the test split by k-NN.

    Returns:
        ``{"top1": {k: %}, "pool", "temperature", "ks", "num_train", "num_test",
        "extract_s", "knn_s"}``.
    """
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = split_features(model, data, pool, batch_size, device, precision, num_workers)
    extracted = time.perf_counter()
    top1 = knn_classify(train_x, train_y, test_x, test_y, ks, temperature, data.num_classes)
    done = time.perf_counter()
    return {
        "top1": {str(k): v for k, v in top1.items()},
        "pool": pool,
        "temperature": temperature,
        "ks": list(ks),
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "extract_s": round(extracted - start, 3),
        "knn_s": round(done - extracted, 3),
    }


def knn_eval(
    model: torch.nn.Module,
    cfg: Config,
    data: EvalData,
    pool: Pool = "cls",
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """k-NN accuracy of an in-memory model, e.g. from the pre-training loop.

    Runs in a single process (call it on rank 0); the model is switched to eval mode for
    the pass and back afterwards, and no gradient is recorded.

    Args:
        model: The (possibly DDP-wrapped or compiled) :class:`MaskedAutoencoder`.
        cfg: The run's resolved config (``train.precision`` sets the precision of the pass).
        data: The evaluation data, built once and reused across calls.
        pool: ``"cls"`` or ``"avg"``.
        batch_size: Images per forward pass.
        device: Default: the device of the model's parameters.

    Returns:
        As :func:`run_knn` at every k of :data:`DEFAULT_KS`: ``top1`` maps each ``k`` (as a
        string) to an accuracy in %.
    """
    inner = unwrap_model(model)
    if device is None:
        device = next(inner.parameters()).device
    device = torch.device(device)
    precision = resolve_precision(cfg.train.precision, device)
    if data.channels != inner.in_chans or data.img_size != inner.cfg.img_size:
        raise DataError(
            f"the evaluation data gives {data.channels}-channel {data.img_size} px images but the model takes "
            f"{inner.in_chans} channel(s) at {inner.cfg.img_size} px"
        )
    return run_knn(inner, data, DEFAULT_KS, pool, batch_size=batch_size, device=device, precision=precision)

