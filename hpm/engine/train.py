"""The pre-training loop: ``hpm pretrain``. Reads top to bottom; resumes from its run directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from hpm.config import Config, _deep_merge, config_from_dict, config_to_dict, diff_configs, save_config
from hpm.data import GlobalBatchSampler, build_pretrain_data, collate_skip_none
from hpm.engine import distributed as D
from hpm.engine.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hpm.engine.ema import ema_decay_at
from hpm.engine.logger import LOG, MetricsLogger, log_to_file, read_metrics, setup_logging
from hpm.engine.optim import absolute_lr, build_lr_schedule, build_optimizer, effective_batch
from hpm.engine.precision import resolve_device, resolve_precision
from hpm.engine.step import PretrainStep
from hpm.errors import ConfigError, DataError, NonFiniteLossError
from hpm.masking import alpha_at, num_hard_patches
from hpm.models import build_model

# Keys that may change between an interrupted run and its resumption.
_RESUME_FREE = (
    "output_dir", "data.num_workers", "train.device", "train.keep_ckpts", "train.log_every", "eval.",
)


@dataclass
class RunSummary:
    """Where a finished run left its outputs."""

    run_dir: Path
    checkpoint: Path | None
    steps: int
    final_loss: float | None
    skipped_images: int


def _check_resume_config(run_dir: Path, cfg: Config) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    # keys added to hpm after the run started take their defaults (the run used that behaviour)
    preset = (saved.get("model") or {}).get("preset", cfg.model.preset)
    defaults = config_to_dict(config_from_dict({"model": {"preset": preset}}))
    saved = _deep_merge(defaults, saved)
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


def _logged(run_dir: Path, step: int, key: str) -> bool:
    """Whether ``metrics.jsonl`` already holds ``key`` for ``step`` (a finished run re-run)."""
    return any(r.get("step") == step and key in r for r in read_metrics(run_dir / "metrics.jsonl"))


def _loader(data, sampler: GlobalBatchSampler, workers: int) -> DataLoader:
    return DataLoader(
        data.dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_none,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def pretrain(cfg: Config) -> RunSummary:
    """Pre-train MAE / HPM as configured; resume automatically from ``cfg.output_dir``."""
    device = resolve_device(cfg.train.device, 0)
    dist = D.init_distributed(device.type)
    device = resolve_device(cfg.train.device, dist.local_rank)
    precision = resolve_precision(cfg.train.precision, device)
    run_dir = Path(cfg.output_dir)
    setup_logging(dist.is_main)
    try:
        return _pretrain(cfg, run_dir, device, precision, dist)
    finally:
        D.shutdown_distributed()


def _pretrain(cfg, run_dir: Path, device: torch.device, precision, dist: D.DistInfo) -> RunSummary:
    tc = cfg.train
    torch.manual_seed(tc.seed)

    # ---- data (fails fast with a clear message when missing)
    data = build_pretrain_data(cfg.data, cfg.model.img_size, tc.seed)
    if cfg.model.in_chans is None:
        cfg.model.in_chans = data.channels
    elif cfg.model.in_chans != data.channels:
        raise ConfigError(
            f"model.in_chans={cfg.model.in_chans} but the data has {data.channels} channel(s); "
            f"drop model.in_chans (it follows the data) or set data.channels"
        )
    cfg = config_from_dict(config_to_dict(cfg))  # re-validate the resolved config
    _check_resume_config(run_dir, cfg)
    sampler = GlobalBatchSampler(data.num_images, tc.batch_size, dist.world_size, dist.rank, tc.seed)
    steps_per_epoch = sampler.batches_per_epoch // tc.accum_steps
    if steps_per_epoch < 1:
        raise DataError(
            f"{data.num_images} images give no full optimizer step of {effective_batch(tc, dist.world_size)}"
            " images; lower train.batch_size / train.accum_steps or use more data"
        )
    total_steps = steps_per_epoch * tc.epochs
    warmup_steps = round(tc.warmup_epochs * steps_per_epoch)

    # ---- model, optimizer, step
    model = build_model(cfg.model, loss_predictor=cfg.loss.predictor != "none").to(device)
    lr = absolute_lr(tc, dist.world_size)
    optimizer = build_optimizer(model, tc, lr)
    schedule = build_lr_schedule(optimizer, total_steps, warmup_steps, tc.min_lr)
    ddp = None
    if dist.enabled:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = PretrainStep(cfg, model, optimizer, device, precision, dist.rank, dist.world_size, ddp)

    # ---- resume
    start_step = 0
    time_before = 0.0  # training seconds spent by earlier (interrupted) invocations
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        state = load_state(ckpt)
        load_weights(model, ckpt / "model.safetensors")
        if step_fn.teacher is not None:
            load_weights(step_fn.teacher, ckpt / "teacher.safetensors")
        step_fn.load_state_dict(state["step_state"])
        set_rng_state(state["rng"])
        start_step = int(state["step"])
        time_before = float(state.get("train_time_s", 0.0))
        LOG.info("resuming from %s (step %d of %d)", ckpt, start_step, total_steps)
    if dist.is_main:  # nothing is written before the data, config and checkpoint are known good
        run_dir.mkdir(parents=True, exist_ok=True)
        log_to_file(run_dir / "train.log")
        save_config(cfg, run_dir / "config.yaml")
    metrics = MetricsLogger(run_dir, dist.is_main, resume_step=start_step if ckpt else None)

    n_params = sum(p.numel() for p in model.parameters())
    n_enc = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("decoder", "predictor", "mask")))
    LOG.info(
        "data: %s, %d images, %d channel(s), %d px | model: %s, %.2fM parameters (encoder %.2fM) | "
        "mask: %s, loss predictor: %s",
        data.name, data.num_images, data.channels, cfg.model.img_size, cfg.model.preset,
        n_params / 1e6, n_enc / 1e6, cfg.mask.strategy, cfg.loss.predictor,
    )
    LOG.info(
        "device %s, precision %s, %d process(es) | effective batch %d = %d x %d accum x %d | "
        "lr %.3g (blr %.3g) | %d steps/epoch, %d epochs, %d warm-up steps",
        device, precision, dist.world_size, effective_batch(tc, dist.world_size), tc.batch_size,
        tc.accum_steps, dist.world_size, lr, tc.blr, steps_per_epoch, tc.epochs, warmup_steps,
    )

    loader = _loader(data, sampler, cfg.data.num_workers)
    bar = tqdm(total=total_steps, initial=start_step, disable=not dist.is_main, unit="step", dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    skipped = 0
    window_images, window_start = 0, time.perf_counter()
    last_ckpt, last_loss = ckpt, None
    segment_start, eval_time = time.perf_counter(), 0.0

    def train_time() -> float:
        """Wall seconds spent training this run so far (all invocations, k-NN excluded)."""
        return time_before + time.perf_counter() - segment_start - eval_time

    def check_finite(step: int) -> None:
        bad = int(first_bad.item())
        if bad >= 0:
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at step {bad} (epoch {bad // steps_per_epoch}). "
                f"The last good checkpoint is kept: {last_ckpt or 'none was written yet'}. "
                "Try a lower train.blr, train.clip_grad=1.0 or train.precision=fp32."
            )

    def checkpoint(step: int) -> None:
        nonlocal last_ckpt
        check_finite(step)
        if dist.is_main:
            state = {
                "step_state": step_fn.state_dict(),
                "rng": rng_state(),
                "config": config_to_dict(cfg),
                "epoch": step // steps_per_epoch,
                "train_time_s": train_time(),
            }
            last_ckpt = save_checkpoint(run_dir, step, model, step_fn.teacher, state, tc.keep_ckpts)
        D.barrier()

    knn_data = None

    def knn(epoch: int, step: int) -> None:
        nonlocal knn_data, eval_time, window_start
        started = time.perf_counter()
        if dist.is_main:
            from hpm.eval.data import build_eval_data
            from hpm.eval.knn import knn_eval

            ec = cfg.eval
            if knn_data is None:
                knn_data = build_eval_data(
                    cfg.data, cfg.model.img_size, cfg.model.in_chans,
                    ec.knn_train_subset, ec.knn_test_subset, tc.seed,
                )
            res = knn_eval(model, cfg, pool=ec.knn_pool, precision=precision, data=knn_data)
            top1 = res["top1"]
            record = {"epoch": epoch, "step": step, "knn_top1": top1[str(ec.knn_k)] if str(ec.knn_k) in top1 else None}
            record.update({f"knn_top1_k{k}": v for k, v in top1.items()})
            metrics.log(record)
            LOG.info(
                "k-NN (%s token, %d train / %d test images) top-1: %s",
                ec.knn_pool, res["num_train"], res["num_test"],
                ", ".join(f"k={k} {v:.2f}%" for k, v in top1.items()),
            )
        D.barrier()
        spent = time.perf_counter() - started
        eval_time += spent
        window_start += spent  # images/s counts training only

    step = start_step
    for epoch in range(start_step // steps_per_epoch, tc.epochs):
        model.train()
        first = step - epoch * steps_per_epoch
        sampler.set_epoch(epoch)
        sampler.set_start(first * tc.accum_steps)
        batches = iter(loader)
        for _ in range(first, steps_per_epoch):
            schedule.step_update(step)
            alpha = alpha_at(cfg.mask, epoch, step, tc.epochs, total_steps)
            num_hard = num_hard_patches(step_fn.num_mask, alpha) if cfg.mask.strategy == "hpm" else 0
            log_now = (step + 1) % tc.log_every == 0 or step + 1 == total_steps
            for micro in range(tc.accum_steps):
                images, _, n_bad = next(batches)
                skipped += n_bad
                if images.shape[0] == 0:
                    if dist.enabled:
                        raise DataError("a whole batch of images was unreadable; fix or remove the corrupt files")
                    continue
                images = images.to(device, non_blocking=True)
                masks, scores = step_fn.generate_mask(images, num_hard)
                out = step_fn.forward_backward(
                    images, masks, scores, num_hard,
                    loss_scale=1.0 / tc.accum_steps,
                    want_metrics=log_now and micro == tc.accum_steps - 1,
                    sync_grads=micro == tc.accum_steps - 1,
                )
                bad_now = (first_bad < 0) & ~torch.isfinite(out["loss"])  # stays on the device
                first_bad = torch.where(bad_now, torch.full_like(first_bad, step), first_bad)
                for key, value in out.items():
                    sums[key] = sums.get(key, 0.0) + value / tc.accum_steps
                sums["_micro"] = sums.get("_micro", 0.0) + 1.0 / tc.accum_steps
                window_images += images.shape[0] * dist.world_size
            step_fn.optimizer_step(ema_decay_at(cfg.ema, step / steps_per_epoch, tc.epochs))
            step += 1
            bar.update(1)
            if log_now:
                check_finite(step)
                n = sums.pop("_micro")
                metric_keys = [k for k in ("pred_spearman", "pred_top25", "teacher_spearman", "teacher_top25") if k in out]
                avg = {k: v / n for k, v in sums.items() if k not in metric_keys}
                avg.update({k: out[k] for k in metric_keys})  # metrics of the last step
                if cfg.loss.predictor == "none":
                    avg.pop("loss_pred", None)  # MAE has no loss-prediction objective (not a zero one)
                keys = sorted(avg)
                values = D.all_reduce_mean(torch.stack([torch.as_tensor(avg[k], device=device).float() for k in keys]))
                elapsed = time.perf_counter() - window_start
                record = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"]}
                record.update({k: float(v) for k, v in zip(keys, values.tolist())})
                record["img_per_s"] = window_images / max(elapsed, 1e-9)
                record["time_s"] = train_time()
                record["skipped_images"] = int(D.all_reduce_sum(torch.tensor([skipped], device=device)).item())
                if cfg.mask.strategy == "hpm":
                    record["alpha"] = alpha
                    record["num_hard"] = num_hard
                metrics.log(record)
                last_loss = record["loss"]
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", img_s=f"{record['img_per_s']:.0f}")
                sums.clear()
                window_images, window_start = 0, time.perf_counter()
            if tc.ckpt_every_steps and step % tc.ckpt_every_steps == 0 and step % steps_per_epoch:
                checkpoint(step)
        if (epoch + 1) % tc.ckpt_every_epochs == 0 or epoch + 1 == tc.epochs:
            checkpoint(step)
        every = cfg.eval.knn_every_epochs
        if every and (epoch + 1) % every == 0 and epoch + 1 < tc.epochs:
            knn(epoch, step)
    bar.close()
    if cfg.eval.knn_at_end:
        # rank 0 decides (a finished run that is re-run has it already); every rank follows
        todo = int(dist.is_main and not _logged(run_dir, step, "knn_top1"))
        if D.all_reduce_sum(torch.tensor([todo], device=device)).item():
            knn(tc.epochs - 1, step)
    check_finite(step)
    metrics.close()
    skipped_total = int(D.all_reduce_sum(torch.tensor([skipped], device=device)).item())
    if cfg.eval.figures_at_end and dist.is_main:  # after the last collective: no rank waits
        from hpm.viz.figures import write_run_figures

        write_run_figures(run_dir)
    if skipped_total:
        LOG.warning("%d unreadable image(s) were skipped (see the data set for corrupt files)", skipped_total)
    if dist.is_main:
        LOG.info(
            "done: %d steps, final loss %s. Outputs in %s:\n"
            "  config.yaml        resolved config\n"
            "  metrics.jsonl      one record per %d steps (tensorboard --logdir %s)\n"
            "  train.log          this log\n"
            "%s"
            "  %s  newest checkpoint (re-running the same command resumes from it)",
            step, f"{last_loss:.4f}" if last_loss is not None else "n/a", run_dir, tc.log_every,
            run_dir / "tensorboard",
            "  figures/           training curves and predicted-loss panels (hpm plot, hpm visualize)\n"
            if cfg.eval.figures_at_end else "",
            last_ckpt.relative_to(run_dir) if last_ckpt else "checkpoints/",
        )
    return RunSummary(run_dir, last_ckpt, step, last_loss, skipped_total)
