"""k-NN monitoring of a pre-training run: the record ``hpm pretrain`` logs during and after training."""

from __future__ import annotations

from typing import Any

from hpm.config import Config
from hpm.engine.logger import LOG
from hpm.eval.data import EvalData, build_eval_data
from hpm.eval.knn import knn_eval
from hpm.models.mae import MaskedAutoencoder


class KnnMonitor:
    """k-NN top-1 of the student's encoder on the run's data (``eval.knn_*`` keys).

    Call it as ``monitor(model, epoch, step)`` on rank 0; the evaluation data are built on the
    first call and reused. Returns the ``metrics.jsonl`` record: ``knn_top1`` (at ``eval.knn_k``)
    and ``knn_top1_k<k>`` for every k.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data: EvalData | None = None

    def __call__(self, model: MaskedAutoencoder, epoch: int, step: int) -> dict[str, Any]:
        cfg, ec = self.cfg, self.cfg.eval
        if self.data is None:
            self.data = build_eval_data(
                cfg.data, cfg.model.img_size, cfg.model.in_chans, ec.knn_train_subset, ec.knn_test_subset, cfg.train.seed
            )
        res = knn_eval(model, cfg, pool=ec.knn_pool, data=self.data)
        top1 = res["top1"]
        record: dict[str, Any] = {"epoch": epoch, "step": step, "knn_top1": top1.get(str(ec.knn_k))}
        record.update({f"knn_top1_k{k}": v for k, v in top1.items()})
        LOG.info(
            "k-NN (%s token, %d train / %d test images) top-1: %s",
            ec.knn_pool, res["num_train"], res["num_test"], ", ".join(f"k={k} {v:.2f}%" for k, v in top1.items()),
        )
        return record
