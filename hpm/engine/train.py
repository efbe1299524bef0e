"""Pre-training (``hpm pretrain``): set up, then the run engine's epochs; resumes from its run directory.

Read it top to bottom: :func:`pretrain` checks the output directory can be written, takes the
run directory's lock (:mod:`hpm.engine.lock`), calls :func:`setup` (data, model, optimizer, the
step of :mod:`hpm.engine.step`, resume point) and hands the :class:`~hpm.engine.pretraining.Pretraining`
task to :func:`~hpm.engine.loop.run_epochs`, which owns the loop, checkpoints, stop signals
(SIGTERM, SIGUSR1, Ctrl-C: :mod:`hpm.engine.preemption`) and faults. Evaluation during training
is a callback of the caller (``on_epoch_end``); work at the end of a run (k-NN, figures) is done
by the command (:mod:`hpm.pretrain`), not here. Any other exception ends the run at once: it is
written to ``train.log`` with its traceback, the DataLoader workers, TensorBoard writer and
process group are shut down (:mod:`hpm.engine.shutdown`) and the exception reaches the caller;
checkpoints carry the partial logging window, so the records of a resumed run are the
uninterrupted run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from hpm.config import Config, config_from_dict, config_to_dict, deep_merge, save_config
from hpm.data import GlobalBatchSampler, build_pretrain_data, collate_skip_none
from hpm.data.build import PretrainData
from hpm.engine import distributed as D
from hpm.engine.checkpoint import load_newest_on_every_rank, load_state, load_weights, set_rng_state
from hpm.engine.clock import TrainClock
from hpm.engine.ddp import wrap_ddp
from hpm.engine.lock import RunDirLock
from hpm.engine.logger import LOG, MetricsLogger, log_run_failure, log_to_file, setup_logging
from hpm.engine.loop import run_epochs
from hpm.engine.optim import absolute_lr, build_lr_schedule, build_optimizer, effective_batch
from hpm.engine.outdir import check_output_dir
from hpm.engine.precision import Resolved, resolve_device, resolve_precision
from hpm.engine.preemption import ignore_stop_signals
from hpm.engine.pretraining import EpochHook, Pretraining
from hpm.engine.resume import changed_keys, refuse_changed
from hpm.engine.shutdown import close_loader, reap_daemons_at_exit
from hpm.engine.step import PretrainStep
from hpm.engine.step_log import StepLog
from hpm.errors import ConfigError, DataError
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.models import build_run_model
from hpm.models.mae import MaskedAutoencoder

__all__ = ["EpochHook", "RunSummary", "StepLog", "TrainClock", "pretrain", "setup"]

# Keys that may change between an interrupted run and its resumption.
_RESUME_FREE = (
    "output_dir", "data.num_workers", "train.device", "train.keep_ckpts", "train.keep_epochs", "train.log_every",
    "train.compile", "eval.",
)


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


def pretrain(cfg: Config, on_epoch_end: EpochHook | None = None) -> RunSummary:
    """Pre-train MAE / HPM as configured; resume automatically from ``cfg.output_dir``.

    Raises:
        OutputDirError: ``cfg.output_dir`` cannot be written (checked before anything is loaded).
        RunDirInUse: Another process runs in ``cfg.output_dir``.
        Preempted: A stop signal arrived; a checkpoint of the last finished step was written.
    """
    device = resolve_device(cfg.train.device, 0)
    dist = D.init_distributed(device.type)
    device = resolve_device(cfg.train.device, dist.local_rank)
    precision = resolve_precision(cfg.train.precision, device)
    setup_logging(dist.is_main)
    reap_daemons_at_exit()
    run: Pretraining | None = None
    try:
        check_output_dir(cfg.output_dir)
        with RunDirLock(cfg.output_dir, dist.is_main):
            run = setup(cfg, Path(cfg.output_dir), device, precision, dist)
            run.on_epoch_end = on_epoch_end
            run_epochs(run)
        skipped = run.log.skipped_total()
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
    data = build_pretrain_data(cfg.data, cfg.model.img_size, tc.seed, cfg.model.num_frames)  # fails fast when missing
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
    step_fn = PretrainStep(cfg, model, optimizer, device, precision, dist.rank, dist.world_size,
                           wrap_ddp(model, device, dist), target)
    ckpt, start_step, time_before, window = _resume(run_dir, step_fn, total_steps, dist)
    if dist.is_main:
        log_to_file(run_dir / "train.log")
        save_config(cfg, run_dir / "config.yaml")
    metrics = MetricsLogger(run_dir, dist.is_main, resume_step=start_step if ckpt else None)
    run = Pretraining(
        cfg, run_dir, device, precision, dist, data, sampler, _loader(data, sampler, cfg.data.num_workers), model,
        optimizer, schedule, step_fn, metrics, steps_per_epoch, start_step, TrainClock(time_before), ckpt,
    )
    run.log.load_state_dict(window)
    _log_header(run, lr)
    return run


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
    """Refuse to resume a run of another config (keys of :data:`_RESUME_FREE` may differ)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    # keys a run's saved config lacks take their defaults (the run used that behaviour)
    preset = (saved.get("model") or {}).get("preset", cfg.model.preset)
    defaults = config_to_dict(config_from_dict({"model": {"preset": preset}}))
    saved = config_to_dict(config_from_dict(deep_merge(defaults, saved)))  # older spellings mapped
    if saved["loss"]["target_dim"] is None:  # a run without loss.target_dim: pixels, the width cfg has
        saved["loss"]["target_dim"] = cfg.loss.target_dim
    refuse_changed(
        run_dir, "a run with a different config", changed_keys(saved, config_to_dict(cfg), _RESUME_FREE),
        "Use another --output-dir for the new config (the existing run is left untouched).",
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
        "data: %s, %d %s, %d channel(s), %d px | model: %s, %.2fM parameters (encoder %.2fM) | "
        "mask: %s, loss predictor: %s | compile: %s",
        run.data.name, run.data.num_images, "clips" if cfg.model.num_frames else "images", run.data.channels,
        cfg.model.img_size, cfg.model.preset,
        n_params / 1e6, n_enc / 1e6, _mask_name(cfg), cfg.loss.predictor, "on" if run.step_fn.compiled else "off",
    )
    LOG.info(
        "device %s, precision %s, %d process(es) | effective batch %d = %d x %d accum x %d | "
        "lr %.3g (blr %.3g) | %d steps/epoch, %d epochs, %d warm-up steps",
        run.device, run.precision, run.dist.world_size, effective_batch(tc, run.dist.world_size), tc.batch_size,
        tc.accum_steps, run.dist.world_size, lr, tc.blr, run.steps_per_epoch, tc.epochs,
        round(tc.warmup_epochs * run.steps_per_epoch),
    )
