"""The pre-training loop (``hpm pretrain``): set up, then one epoch after another; resumes from its run directory.

Read it top to bottom: :func:`pretrain` calls :func:`setup` (data, model, optimizer, the step of
:mod:`hpm.engine.step`, resume point) and then :func:`train_one_epoch` per epoch, which runs
masks -> forward/backward -> optimizer step per batch and hands logging and checkpoints to small
helpers. Evaluation during training is a callback of the caller (``on_epoch_end``); work at the
end of a run (k-NN, figures) is done by the command (:mod:`hpm.pretrain`), not here.
SIGTERM / SIGUSR1 stop the run after the current optimizer step with a checkpoint
(:mod:`hpm.engine.preemption`). Any other exception ends the run at once: it is written to
``train.log`` with its traceback, the DataLoader workers, TensorBoard writer and process group
are shut down (:mod:`hpm.engine.shutdown`) and the exception reaches the caller; checkpoints
carry the partial logging window, so the records of a resumed run are the uninterrupted run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from hpm.config import Config, _deep_merge, config_from_dict, config_to_dict, diff_configs, save_config
from hpm.data import GlobalBatchSampler, build_pretrain_data, collate_skip_none
from hpm.data.build import PretrainData
from hpm.engine import distributed as D
from hpm.engine.checkpoint import load_newest_on_every_rank, load_state, load_weights, rng_state, save_checkpoint, set_rng_state
from hpm.engine.ema import ema_decay_at
from hpm.engine.logger import LOG, MetricsLogger, SkippedFiles, log_run_failure, log_to_file, setup_logging
from hpm.engine.optim import absolute_lr, build_lr_schedule, build_optimizer, effective_batch
from hpm.engine.precision import Resolved, resolve_device, resolve_precision
from hpm.engine.preemption import StopSignals, ignore_stop_signals, preempted
from hpm.engine.shutdown import close_loader, reap_daemons_at_exit
from hpm.engine.step import PretrainStep
from hpm.errors import ConfigError, DataError, NonFiniteLossError
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.masking import alpha_at, num_hard_patches
from hpm.models import build_run_model
from hpm.models.mae import MaskedAutoencoder

# Keys that may change between an interrupted run and its resumption.
_RESUME_FREE = (
    "output_dir", "data.num_workers", "train.device", "train.keep_ckpts", "train.keep_epochs", "train.log_every",
    "train.compile", "eval.",
)
# Called after each epoch's checkpoint (rank 0 only): (student, epoch, step) -> a record to log, or None.
EpochHook = Callable[[MaskedAutoencoder, int, int], "dict[str, Any] | None"]


@dataclass
class RunSummary:
    """Where a finished run left its outputs."""

    run_dir: Path
    checkpoint: Path | None
    steps: int
    final_loss: float | None
    skipped_images: int
    is_main: bool = True  # rank 0 (the process that writes the run directory)
    model: MaskedAutoencoder | None = field(default=None, repr=False)  # the trained student


class TrainClock:
    """Wall seconds spent training this run, over all invocations, evaluation excluded."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()
        self.excluded = 0.0

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start - self.excluded


@dataclass
class Pretraining:
    """What the loop needs, built by :func:`setup`."""

    cfg: Config
    run_dir: Path
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    data: PretrainData
    sampler: GlobalBatchSampler
    loader: DataLoader
    model: MaskedAutoencoder
    optimizer: torch.optim.Optimizer
    schedule: Any  # timm CosineLRScheduler, stepped per optimizer step
    step_fn: PretrainStep
    metrics: MetricsLogger
    steps_per_epoch: int
    total_steps: int
    step: int  # optimizer steps done (the resume point at first)
    clock: TrainClock
    last_ckpt: Path | None
    last_loss: float | None = None
    resume_window: dict[str, Any] | None = None  # the checkpoint's partial logging window (StepLog)


def pretrain(cfg: Config, on_epoch_end: EpochHook | None = None) -> RunSummary:
    """Pre-train MAE / HPM as configured; resume automatically from ``cfg.output_dir``.

    Raises:
        Preempted: SIGTERM or SIGUSR1 arrived; a checkpoint of the last finished step was written.
    """
    device = resolve_device(cfg.train.device, 0)
    dist = D.init_distributed(device.type)
    device = resolve_device(cfg.train.device, dist.local_rank)
    precision = resolve_precision(cfg.train.precision, device)
    setup_logging(dist.is_main)
    reap_daemons_at_exit()
    run: Pretraining | None = None
    try:
        run = setup(cfg, Path(cfg.output_dir), device, precision, dist)
        log = StepLog(run)
        log.load_state_dict(run.resume_window)
        bar = tqdm(total=run.total_steps, initial=run.step, disable=not dist.is_main, unit="step", dynamic_ncols=True)
        with StopSignals() as stop, bar:  # the bar is closed before an error is printed
            for epoch in range(run.step // run.steps_per_epoch, run.cfg.train.epochs):
                train_one_epoch(run, epoch, log, stop, bar)
                end_of_epoch(run, epoch, log, on_epoch_end)
                stop_if_asked(run, log, stop)
        log.check_finite()
        skipped = log.skipped_total()
        if skipped:
            LOG.warning("%d unreadable image(s) were skipped in all (named above, first ten)", skipped)
        return RunSummary(run.run_dir, run.last_ckpt, run.step, run.last_loss, skipped, dist.is_main, run.model)
    except BaseException as exc:
        log_run_failure(exc)
        raise
    finally:
        if run is not None:
            close_loader(run.loader)
            run.metrics.close()
            run.step_fn.release_ddp()  # before the process group goes: see PretrainStep.release_ddp
        D.shutdown_distributed()


def setup(cfg: Config, run_dir: Path, device: torch.device, precision: Resolved, dist: D.DistInfo) -> Pretraining:
    """Data, model, optimizer, schedule and step; restored from the newest checkpoint if any.

    Nothing is written before the data, the config and the checkpoint are known to be good.
    """
    tc = cfg.train
    if dist.is_main and (run_dir / "train.log").is_file():
        log_to_file(run_dir / "train.log")  # a resume: its warnings, and a refusal, reach the run's log
    torch.manual_seed(tc.seed)
    data = build_pretrain_data(cfg.data, cfg.model.img_size, tc.seed)  # fails fast when missing
    cfg = _resolve_channels(cfg, data.channels)
    target = build_target(cfg, device)  # a model target's weights are read (and checked) here
    cfg = resolve_target_dim(cfg, target)
    _check_resume_config(run_dir, cfg)
    sampler = GlobalBatchSampler(data.num_images, tc.batch_size, dist.world_size, dist.rank, tc.seed)
    steps_per_epoch = sampler.batches_per_epoch // tc.accum_steps
    if steps_per_epoch < 1:
        raise DataError(
            f"{data.num_images} images give no full optimizer step of {effective_batch(tc, dist.world_size)}"
            " images; lower train.batch_size / train.accum_steps or use more data"
        )
    total_steps = steps_per_epoch * tc.epochs
    model = build_run_model(cfg).to(device)
    lr = absolute_lr(tc, dist.world_size)
    optimizer = build_optimizer(model, tc, lr)
    schedule = build_lr_schedule(optimizer, total_steps, round(tc.warmup_epochs * steps_per_epoch), tc.min_lr)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else None
    step_fn = PretrainStep(cfg, model, optimizer, device, precision, dist.rank, dist.world_size, ddp, target)
    ckpt, start_step, time_before, window = _resume(run_dir, step_fn, total_steps, dist)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        log_to_file(run_dir / "train.log")
        save_config(cfg, run_dir / "config.yaml")
    metrics = MetricsLogger(run_dir, dist.is_main, resume_step=start_step if ckpt else None)
    run = Pretraining(
        cfg, run_dir, device, precision, dist, data, sampler, _loader(data, sampler, cfg.data.num_workers), model,
        optimizer, schedule, step_fn, metrics, steps_per_epoch, total_steps, start_step, TrainClock(time_before), ckpt,
        resume_window=window,
    )
    _log_header(run, lr)
    return run


def train_one_epoch(run: Pretraining, epoch: int, log: "StepLog", stop: StopSignals, bar: tqdm) -> None:
    """Optimizer steps of one epoch (from the resume point inside it): masks, forward/backward
    over the micro-batches, optimizer and EMA step, logging; stops cleanly on a stop signal."""
    cfg, tc, step_fn = run.cfg, run.cfg.train, run.step_fn
    run.model.train()
    first = run.step - epoch * run.steps_per_epoch
    run.sampler.set_epoch(epoch)
    run.sampler.set_start(first * tc.accum_steps)
    batches = iter(run.loader)
    for _ in range(first, run.steps_per_epoch):
        step = run.step
        run.schedule.step_update(step)
        alpha = alpha_at(cfg.mask, epoch, step, tc.epochs, run.total_steps)
        num_hard = num_hard_patches(step_fn.num_mask, alpha) if step_fn.uses_teacher else 0
        log_now = (step + 1) % tc.log_every == 0 or step + 1 == run.total_steps
        for micro in range(tc.accum_steps):
            images, _, dropped = next(batches)
            log.skip(dropped)
            if images.shape[0] == 0:
                if run.dist.enabled:
                    raise DataError("a whole batch of images was unreadable; fix or remove the corrupt files")
                continue
            images = images.to(run.device, non_blocking=True)
            masks, scores = step_fn.generate_mask(images, num_hard)
            out = step_fn.forward_backward(
                images, masks, scores, num_hard,
                loss_scale=1.0 / tc.accum_steps,
                want_metrics=log_now and micro == tc.accum_steps - 1,
                sync_grads=micro == tc.accum_steps - 1,
            )
            log.add(out, step, images.shape[0] * run.dist.world_size)
        step_fn.optimizer_step(ema_decay_at(cfg.ema, step / run.steps_per_epoch, tc.epochs))
        run.step += 1
        bar.update(1)
        if log_now:
            log.write(epoch, out, alpha, num_hard, bar)
        if tc.ckpt_every_steps and run.step % tc.ckpt_every_steps == 0 and run.step % run.steps_per_epoch:
            checkpoint(run, log)
        if run.step % run.steps_per_epoch:  # at the epoch's end the caller checks, after end_of_epoch
            stop_if_asked(run, log, stop)


def end_of_epoch(run: Pretraining, epoch: int, log: "StepLog", on_epoch_end: EpochHook | None) -> None:
    """The epoch's checkpoint, then the caller's evaluation every ``eval.knn_every_epochs``."""
    tc = run.cfg.train
    if (epoch + 1) % tc.ckpt_every_epochs == 0 or epoch + 1 == tc.epochs or epoch + 1 in tc.keep_epochs:
        checkpoint(run, log)
    every = run.cfg.eval.knn_every_epochs
    if on_epoch_end is None or not every or (epoch + 1) % every or epoch + 1 >= tc.epochs:
        return
    started = time.perf_counter()
    if run.dist.is_main:
        record = on_epoch_end(run.model, epoch, run.step)
        if record is not None:
            run.metrics.log(record)
    D.barrier()
    spent = time.perf_counter() - started
    run.clock.excluded += spent
    log.window_start += spent  # images/s counts training only


def checkpoint(run: Pretraining, log: "StepLog") -> Path | None:
    """Check the losses are finite, then write a checkpoint of ``run.step`` (rank 0) and wait for every rank."""
    log.check_finite()
    windows = D.all_gather_objects(log.state_dict())  # every rank's partial window (a collective)
    if run.dist.is_main:
        state = {
            "step_state": run.step_fn.state_dict(),
            "rng": rng_state(),
            "config": config_to_dict(run.cfg),
            "epoch": run.step // run.steps_per_epoch,
            "train_time_s": run.clock.seconds(),
            "log_windows": windows,  # per rank
        }
        kept = {e * run.steps_per_epoch for e in run.cfg.train.keep_epochs}  # train.keep_epochs: never pruned
        run.last_ckpt = save_checkpoint(
            run.run_dir, run.step, run.model, run.step_fn.teacher, state, run.cfg.train.keep_ckpts, kept
        )
    D.barrier()
    return run.last_ckpt


def stop_if_asked(run: Pretraining, log: "StepLog", stop: StopSignals) -> None:
    """After a SIGTERM / SIGUSR1 (on any rank): checkpoint the finished step, unless it was
    just written, and raise :class:`Preempted`. A collective under torchrun: every rank calls it
    at the same points."""
    signum = stop.agreed(run.device)
    if not signum:
        return
    if not (run.last_ckpt is not None and run.last_ckpt.name == f"step_{run.step:08d}"):
        checkpoint(run, log)
    where = run.last_ckpt if run.dist.is_main else "rank 0's run directory"
    raise preempted("training", signum, run.step, run.total_steps, where)


class StepLog:
    """Running averages of the step outputs between two log records, the first non-finite
    loss (kept on the device: no sync per step), skipped images and the images/s window."""

    def __init__(self, run: Pretraining) -> None:
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
        """Restore :meth:`state_dict` (None: a checkpoint of before windows were saved; start empty)."""
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
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at step {bad} (epoch {bad // self.run.steps_per_epoch}). "
                f"The last good checkpoint is kept: {self.run.last_ckpt or 'none was written yet'}. "
                "Try a lower train.blr, train.clip_grad=1.0 or train.precision=fp32."
            )

    def skipped_total(self) -> int:
        return int(D.all_reduce_sum(torch.tensor([self.skipped.count], device=self.run.device)).item())

    def write(self, epoch: int, out: dict[str, torch.Tensor], alpha: float, num_hard: int, bar: tqdm) -> None:
        """Average over the window (and the ranks), log one record, start a new window."""
        run = self.run
        self.check_finite()
        n = self.sums.pop("_micro")
        metric_keys = [k for k in ("pred_spearman", "pred_top25", "teacher_spearman", "teacher_top25") if k in out]
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


# ------------------------------------------------------------------ set-up helpers
def _resolve_channels(cfg: Config, channels: int) -> Config:
    """``model.in_chans`` follows the data; the resolved config is validated again."""
    if cfg.model.in_chans is None:
        cfg.model.in_chans = channels
    elif cfg.model.in_chans != channels:
        raise ConfigError(
            f"model.in_chans={cfg.model.in_chans} but the data has {channels} channel(s); "
            f"drop model.in_chans (it follows the data) or set data.channels"
        )
    return config_from_dict(config_to_dict(cfg))


def _check_resume_config(run_dir: Path, cfg: Config) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    # keys added to hpm after the run started take their defaults (the run used that behaviour)
    preset = (saved.get("model") or {}).get("preset", cfg.model.preset)
    defaults = config_to_dict(config_from_dict({"model": {"preset": preset}}))
    saved = config_to_dict(config_from_dict(_deep_merge(defaults, saved)))  # older spellings mapped
    if saved["loss"]["target_dim"] is None:  # a run of before loss.target: pixels, the width cfg has
        saved["loss"]["target_dim"] = cfg.loss.target_dim
    diffs = [
        d for d in diff_configs(saved, config_to_dict(cfg))
        if not any(d.startswith(k if k.endswith(".") else k + ":") for k in _RESUME_FREE)
    ]
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a run with a different config, so it cannot be resumed:\n  "
            + "\n  ".join(diffs)
            + "\nUse another --output-dir for the new config (the existing run is left untouched)."
        )


def _resume(
    run_dir: Path, step_fn: PretrainStep, total_steps: int, dist: D.DistInfo
) -> tuple[Path | None, int, float, dict[str, Any] | None]:
    """Load the newest valid checkpoint into the step's models, optimizer, generators and RNG.

    A damaged newest checkpoint is moved aside (rank 0, before the other ranks look) and the one
    before it is used (:func:`~hpm.engine.checkpoint.load_newest`).

    Returns:
        (checkpoint or None, optimizer steps done, training seconds of earlier invocations,
        the checkpoint's partial logging window or None).
    """
    def load(ckpt: Path) -> dict[str, Any]:
        state = load_state(ckpt)
        load_weights(step_fn.model, ckpt / "model.safetensors")
        if step_fn.teacher is not None:
            load_weights(step_fn.teacher, ckpt / "teacher.safetensors")
        return state

    found = load_newest_on_every_rank(run_dir, load, dist.is_main)
    if found is None:
        return None, 0, 0.0, None
    ckpt, state = found
    step_fn.load_state_dict(state["step_state"])
    set_rng_state(state["rng"])
    LOG.info("resuming from %s (step %d of %d)", ckpt, int(state["step"]), total_steps)
    windows = state.get("log_windows") or []
    if windows and len(windows) != dist.world_size:
        LOG.warning("the checkpoint holds the logging windows of %d process(es), this run has %d: the first "
                    "record after the resume averages the steps after it only", len(windows), dist.world_size)
    window = windows[dist.rank] if len(windows) == dist.world_size else None
    return ckpt, int(state["step"]), float(state.get("train_time_s", 0.0)), window


def _loader(data: PretrainData, sampler: GlobalBatchSampler, workers: int) -> DataLoader:
    """Workers kept across epochs, each with 2 batches in flight; pinned host memory on CUDA so
    that the step's ``non_blocking`` copy overlaps the previous step."""
    return DataLoader(
        data.dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_none,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
    )


def _mask_name(cfg: Config) -> str:
    """The masking strategy as the log header names it (``attention`` with its mode and teacher view)."""
    mc = cfg.mask
    if mc.strategy == "attention":
        return f"attention ({mc.attention_mode}, {mc.teacher_view} view)"
    if mc.strategy == "hpm":
        return f"hpm ({mc.teacher_view} view)"
    return mc.strategy


def _log_header(run: Pretraining, lr: float) -> None:
    cfg, tc, model = run.cfg, run.cfg.train, run.model
    n_params = sum(p.numel() for p in model.parameters())
    n_enc = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("decoder", "predictor", "mask")))
    LOG.info(
        "data: %s, %d images, %d channel(s), %d px | model: %s, %.2fM parameters (encoder %.2fM) | "
        "mask: %s, loss predictor: %s | compile: %s",
        run.data.name, run.data.num_images, run.data.channels, cfg.model.img_size, cfg.model.preset,
        n_params / 1e6, n_enc / 1e6, _mask_name(cfg), cfg.loss.predictor, "on" if run.step_fn.compiled else "off",
    )
    LOG.info(
        "device %s, precision %s, %d process(es) | effective batch %d = %d x %d accum x %d | "
        "lr %.3g (blr %.3g) | %d steps/epoch, %d epochs, %d warm-up steps",
        run.device, run.precision, run.dist.world_size, effective_batch(tc, run.dist.world_size), tc.batch_size,
        tc.accum_steps, run.dist.world_size, lr, tc.blr, run.steps_per_epoch, tc.epochs,
        round(tc.warmup_epochs * run.steps_per_epoch),
    )
