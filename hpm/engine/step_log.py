"""The pre-training loop's per-step bookkeeping between two log records."""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm import tqdm

from hpm.engine import distributed as D
from hpm.engine.logger import SkippedFiles
from hpm.engine.loop import non_finite_loss

_LAST_STEP_METRICS = ("pred_spearman", "pred_top25", "teacher_spearman", "teacher_top25")


class StepLog:
    """Running averages of the step outputs between two log records, the first non-finite
    loss (kept on the device: no sync per step), skipped images and the images/s window.

    ``run`` is the :class:`~hpm.engine.pretraining.Pretraining` task (``device`` and ``cfg`` are
    all that :meth:`add` needs).
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        self.sums: dict[str, Any] = {}
        self.first_bad = torch.full((), -1, dtype=torch.long, device=run.device)
        self.skipped = SkippedFiles()
        self.window_images, self.window_start = 0, time.perf_counter()

    def skip(self, dropped: list[str]) -> None:
        self.skipped.add(dropped)

    def state_dict(self) -> dict[str, Any]:
        """The partial window (sums, micro-batch and image counts, seconds) and the skipped-image
        count, for a checkpoint: a run resumed inside a window logs the uninterrupted run's record."""
        sums = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else float(v) for k, v in self.sums.items()}
        return {
            "sums": sums,
            "images": self.window_images,
            "elapsed_s": time.perf_counter() - self.window_start,
            "skipped": self.skipped.count,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict` (None: nothing to restore; start empty)."""
        if not state:
            return
        device = self.run.device
        self.sums = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state["sums"].items()}
        self.window_images = int(state["images"])
        self.window_start = time.perf_counter() - float(state["elapsed_s"])
        self.skipped.count = int(state["skipped"])

    def add(self, out: dict[str, torch.Tensor], step: int, images: int) -> None:
        """One micro-batch's outputs (``images``: over all ranks)."""
        accum = self.run.cfg.train.accum_steps
        bad_now = (self.first_bad < 0) & ~torch.isfinite(out["loss"])
        self.first_bad = torch.where(bad_now, torch.full_like(self.first_bad, step), self.first_bad)
        for key, value in out.items():
            self.sums[key] = self.sums.get(key, 0.0) + value / accum
        self.sums["_micro"] = self.sums.get("_micro", 0.0) + 1.0 / accum
        self.window_images += images

    def check_finite(self) -> None:
        bad = int(self.first_bad.item())
        if bad >= 0:
            raise non_finite_loss("loss", bad, bad // self.run.steps_per_epoch, self.run.last_ckpt, "train.")

    def skipped_total(self) -> int:
        return int(D.all_reduce_sum(torch.tensor([self.skipped.count], device=self.run.device)).item())

    def write(self, epoch: int, out: dict[str, torch.Tensor], alpha: float, num_hard: int, bar: tqdm) -> None:
        """Average over the window (and the ranks), log one record, start a new window."""
        run = self.run
        self.check_finite()
        n = self.sums.pop("_micro")
        metric_keys = [k for k in _LAST_STEP_METRICS if k in out]
        avg = {k: v / n for k, v in self.sums.items() if k not in metric_keys}
        avg.update({k: out[k] for k in metric_keys})  # metrics of the last step
        if run.cfg.loss.predictor == "none":
            avg.pop("loss_pred", None)  # MAE has no loss-prediction objective (not a zero one)
        keys = sorted(avg)
        values = D.all_reduce_mean(torch.stack([torch.as_tensor(avg[k], device=run.device).float() for k in keys]))
        elapsed = time.perf_counter() - self.window_start
        record = {"epoch": epoch, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"]}
        record.update({k: float(v) for k, v in zip(keys, values.tolist())})
        record["img_per_s"] = self.window_images / max(elapsed, 1e-9)
        record["time_s"] = run.clock.seconds()
        record["skipped_images"] = self.skipped_total()
        if run.step_fn.uses_teacher:
            record["alpha"] = alpha
            record["num_hard"] = num_hard
        run.metrics.log(record)
        run.last_loss = record["loss"]
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", img_s=f"{record['img_per_s']:.0f}")
        self.sums.clear()
        self.window_images, self.window_start = 0, time.perf_counter()
