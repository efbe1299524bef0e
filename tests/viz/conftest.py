"""A tiny finished run that wrote its pictures, and run directories with hand-written metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpm.config import build_config
from tests.eval.conftest import TINY_MODEL


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HPM run (one 32-wide block, 128 images, 2 epochs) with k-NN and figures at the end."""
    from hpm.pretrain import run_pretrain
    from tests.conftest import HAVE_FASHION_MNIST, tiny_overrides

    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("viz")
    overrides = tiny_overrides(
        root, model=TINY_MODEL, data={"subset": 128}, train={"epochs": 2, "batch_size": 32, "log_every": 3},
        eval={"knn_at_end": True, "knn_train_subset": 100, "knn_test_subset": 50, "figures_at_end": True},
    )
    return run_pretrain(build_config(overrides=overrides)).run_dir


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """A run directory holding only ``metrics.jsonl`` with ``records``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def fake_records(steps_per_epoch: int, epochs: int, log_every: int, predictor: bool = True) -> list[dict[str, Any]]:
    """Training records every ``log_every`` steps (and at the last) plus a k-NN record per epoch."""
    out: list[dict[str, Any]] = []
    total = steps_per_epoch * epochs
    for step in range(1, total + 1):
        epoch = (step - 1) // steps_per_epoch
        if step % log_every == 0 or step == total:
            r: dict[str, Any] = {"epoch": epoch, "step": step, "lr": 1e-3 * step / total, "loss": 2.0 - step / total,
                                 "loss_rec": 1.0 - 0.5 * step / total, "img_per_s": 50.0 + step}
            if predictor:
                r |= {"loss_pred": 0.7 - 0.1 * step / total, "pred_spearman": 0.1 + 0.5 * step / total}
            out.append(r)
        if step % steps_per_epoch == 0:
            out.append({"epoch": epoch, "step": step, "knn_top1": 40.0 + 5 * epoch, "knn_top1_k10": 41.0})
    return out
