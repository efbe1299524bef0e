"""Linear probe: BatchNorm without affine parameters + a linear layer on frozen features (MAE).

MAE's recipe trains ``BatchNorm1d(affine=False, eps=1e-6) -> Linear`` (head initialised with
std 0.01) on the class token with LARS (base lr 0.1, batch 16384, no weight decay, 10 warm-up
epochs, cosine decay) and evaluates on the centre crop. Here the encoder sees each image once,
without augmentation, and the probe trains on these cached features, so it takes seconds on a
CPU. LARS is replaced by SGD with momentum 0.9 (lr = blr * batch / 256): for a single linear
layer behind a BatchNorm the inputs are already standardised, so the layer-wise trust ratio of
LARS matters little, and plain SGD needs no extra dependency.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hpm.engine.optim import build_lr_schedule
from hpm.engine.precision import Resolved
from hpm.errors import ConfigError
from hpm.eval.data import EvalData
from hpm.eval.encoder import Pool, split_features


@dataclass
class LinearProbeConfig:
    """Optimisation of the probe (MAE's recipe with SGD; the spec's 100 epochs).

    Attributes:
        epochs: Passes over the cached train features.
        batch_size: Features per step.
        blr: Base learning rate; lr = blr * batch_size / 256.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the linear layer (MAE: 0).
        warmup_epochs: Linear warm-up before the cosine decay.
        seed: Seeds the head initialisation and the shuffling.
    """

    epochs: int = 100
    batch_size: int = 256
    blr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(f"the probe needs epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if self.blr <= 0:
            raise ConfigError(f"the probe's blr must be positive, got {self.blr}")


class LinearProbe(nn.Sequential):
    """``BatchNorm1d(affine=False)`` followed by ``Linear``: [N, D] features -> [N, C] logits."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
        nn.init.trunc_normal_(self[1].weight, std=0.01)
        nn.init.zeros_(self[1].bias)


def train_linear_probe(
    feats: Tensor, labels: Tensor, num_classes: int, cfg: LinearProbeConfig | None = None
) -> LinearProbe:
    """Fit a probe on cached features (on their device).

    Args:
        feats: [N, D] float features of the train split.
        labels: [N] integer labels.
        num_classes: Number of classes.
        cfg: The optimisation recipe (default: :class:`LinearProbeConfig`).

    Returns:
        The trained probe, in eval mode.
    """
    cfg = cfg or LinearProbeConfig()
    n = feats.shape[0]
    if n < 2:
        raise ConfigError(f"the linear probe needs at least 2 training images, got {n}")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        probe = LinearProbe(feats.shape[1], num_classes).to(feats.device)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # the last partial batch is dropped
    lr = cfg.blr * batch / 256
    optimizer = torch.optim.SGD(probe.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total = steps_per_epoch * cfg.epochs
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total // 2)
    schedule = build_lr_schedule(optimizer, total, warmup)
    loss_fn = nn.CrossEntropyLoss()
    feats, labels = feats.float(), labels.long()
    probe.train()
    step = 0
    threads = torch.get_num_threads()
    if feats.device.type == "cpu":
        # Each op is tiny: one thread avoids OpenMP start-up costs, which grow
        # tenfold or more when other processes share the cores.
        torch.set_num_threads(1)
    try:
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=gen).to(feats.device)  # [N]
            for i in range(steps_per_epoch):
                idx = order[i * batch : (i + 1) * batch]  # [B]
                schedule.step_update(step)
                loss = loss_fn(probe(feats[idx]), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    finally:
        torch.set_num_threads(threads)
    return probe.eval()


@torch.no_grad()
def probe_accuracy(probe: LinearProbe, feats: Tensor, labels: Tensor, batch_size: int = 4096) -> float:
    """Top-1 accuracy (in %) of a trained probe on [N, D] features with [N] labels."""
    probe.eval()
    correct = 0
    for start in range(0, feats.shape[0], batch_size):
        logits = probe(feats[start : start + batch_size].float())  # [B, C]
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / max(feats.shape[0], 1)


def run_linear(
    model: torch.nn.Module | None,
    data: EvalData,
    pool: Pool = "cls",
    probe_cfg: LinearProbeConfig | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: Resolved = "fp32",
    num_workers: int = 0,
) -> dict[str, Any]:
    """Extract features once, train the probe on the train split, report top-1 on the test split.

    Returns:
        ``{"top1", "train_top1", "pool", "probe", "num_train", "num_test", "extract_s", "probe_s"}``.
    """
    probe_cfg = probe_cfg or LinearProbeConfig()
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = split_features(model, data, pool, batch_size, device, precision, num_workers)
    extracted = time.perf_counter()
    probe = train_linear_probe(train_x, train_y, data.num_classes, probe_cfg)
    done = time.perf_counter()
    return {
        "top1": probe_accuracy(probe, test_x, test_y),
        "train_top1": probe_accuracy(probe, train_x, train_y),
        "pool": pool,
        "probe": {**asdict(probe_cfg), "optimizer": "sgd", "lr": probe_cfg.blr * min(probe_cfg.batch_size, len(train_y)) / 256},
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "extract_s": round(extracted - start, 3),
        "probe_s": round(done - extracted, 3),
    }
