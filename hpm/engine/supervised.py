"""What every supervised fine-tune shares on top of the run loop: its checkpoint contents, its
resumption and refusal, and the run around the loop (output check, lock, log, resume, clean-up).

A supervised task (classification, segmentation, detection, ...) is a :class:`~hpm.engine.loop.Task`
that also holds ``cfg`` (its recipe, a pydantic model), ``setup`` (what is fine-tuned, JSON
types), ``model``, ``optimizer``, ``scaler``, ``loader``, ``history``, ``result``, the running
``loss_sum`` / ``loss_n`` and ``resume_rng``; its checkpoints carry a ``kind`` that names the task.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.checkpoint import (
    load_newest_on_every_rank, load_state, load_weights, rng_state, save_checkpoint, set_rng_state,
)
from hpm.engine.clock import TrainClock
from hpm.engine.lock import RunDirLock
from hpm.engine.logger import LOG, log_run_failure, log_to_file, stop_logging_to
from hpm.engine.loop import non_finite_loss, run_epochs
from hpm.engine.outdir import check_output_dir
from hpm.engine.resume import changed_keys, refuse_changed
from hpm.engine.shutdown import close_loader, reap_daemons_at_exit
from hpm.errors import CheckpointError

KEEP_CKPTS = 2  # checkpoints kept in a fine-tune directory (the newest)


@dataclass(kw_only=True)
class SupervisedRun:
    """Where a supervised fine-tune stands: the bookkeeping the engine and this module read and set.

    A task's dataclass derives from it and adds ``cfg`` (with ``ckpt_every_steps``),
    ``steps_per_epoch``, ``epochs`` and the rest of what it trains.
    """

    what: ClassVar[str] = "fine-tune"  # names the task in messages
    step: int = 0  # optimizer steps done
    loss_sum: float = 0.0  # this rank's training loss since the last evaluation
    loss_n: int = 0  # micro-batches in loss_sum
    history: list[dict[str, Any]] = field(default_factory=list)
    clock: TrainClock = field(default_factory=TrainClock)
    last_ckpt: Path | None = None  # rank 0 only
    last_ckpt_step: int | None = None  # every rank
    result: dict[str, Any] | None = None  # set when the last epoch is done
    resume_rng: dict[str, Any] | None = None  # this rank's RNG states to restore as the first epoch starts

    @property
    def ckpt_every_steps(self) -> int:
        return self.cfg.ckpt_every_steps or 0  # type: ignore[attr-defined]

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs  # type: ignore[attr-defined]


def step_plan(batches: int, epochs: int, iters: int | None) -> tuple[int, int]:
    """``(steps_per_epoch, epochs)`` of a run whose loader gives ``batches`` per pass: ``epochs``
    whole passes, or (``iters`` set) ``iters`` optimizer steps: one partial pass when they are
    fewer than a pass (the first ``iters`` batches of a shuffled pass), else whole passes enough
    for them (rounded up)."""
    if iters is None:
        return batches, epochs
    if iters <= batches:
        return iters, 1
    return batches, math.ceil(iters / batches)


def epoch_batches(run: Any, epoch: int, first: int, samples_per_step: int) -> Iterator[Any]:
    """The epoch's batch iterator after its first ``first`` optimizer steps (``samples_per_step``
    of this rank's samples each); a resumed run restores its RNG states here.

    Making a DataLoader iterator draws a seed from torch's RNG: an uninterrupted run does it at
    every epoch start without workers, and only at the first epoch with persistent workers. The
    checkpoint's RNG states are therefore restored before the iterator when the uninterrupted run
    made one after the checkpoint (an epoch boundary, no workers), and after it otherwise, so the
    draws of the remaining steps follow the same sequence.
    """
    run.sampler.set_epoch(epoch)
    run.sampler.set_start(first * samples_per_step)
    resume_rng, run.resume_rng = run.resume_rng, None
    before = resume_rng is not None and first == 0 and run.cfg.num_workers == 0
    if before:
        set_rng_state(resume_rng)
    batches = iter(run.loader)
    if resume_rng is not None and not before:
        set_rng_state(resume_rng)
    return batches


def backward(run: Any, loss: torch.Tensor) -> None:
    """Backward of one (micro-)batch's loss (scaled under fp16); its value joins the running sum."""
    (run.scaler.scale(loss) if run.scaler else loss).backward()
    run.loss_sum += float(loss.detach())
    run.loss_n += 1


def optimizer_step(run: Any, loss_name: str, epoch: int, bar: Any) -> None:
    """After the step's backward passes: refuse a non-finite running loss (naming ``loss_name``),
    unscale (fp16), clip to ``cfg.clip_grad``, step, zero the gradients, count the step and show
    the running loss and lr on ``bar``."""
    if not math.isfinite(run.loss_sum):
        raise non_finite_loss(loss_name, run.step, epoch, run.last_ckpt)
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    if run.cfg.clip_grad is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    bar.set_postfix(loss=f"{run.loss_sum / max(run.loss_n, 1):.4f}", lr=f"{run.optimizer.param_groups[-1]['lr']:.2e}")


def rank_state(run: Any) -> dict[str, Any]:
    """This rank's RNG states and running loss sums (its part of a checkpoint)."""
    return {"rng": rng_state(), "loss_sum": run.loss_sum, "loss_n": run.loss_n}


def save(run: Any, kind: str, ranks: list[Any], **extra: Any) -> Path:
    """Rank 0: the model, optimizer, grad scaler, history, every rank's state, the recipe and what
    was fine-tuned (plus ``extra`` keys), and the result once there is one."""
    assert run.run_dir is not None
    state = {
        "kind": kind,
        "recipe": run.cfg.model_dump(mode="json"),
        "setup": run.setup,
        **extra,
        "epoch": run.step // run.steps_per_epoch,
        "total_steps": run.total_steps,
        "history": run.history,
        "ranks": ranks,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "train_time_s": run.clock.seconds(),
    }
    if run.result is not None:
        state["result"] = run.result
    return save_checkpoint(run.run_dir, run.step, run.model, None, state, KEEP_CKPTS)


def check_same(run_dir: Path, state: dict[str, Any], cfg: Any, setup: dict[str, Any], what: str,
               free: Iterable[str] = ()) -> None:
    """Refuse to resume (or report) a ``what`` of another recipe or source.

    Compared: every recipe key but ``free`` (a key the checkpoint lacks takes its default), what
    was fine-tuned (``setup["source"]``), the number of processes and the precision.

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    saved = {"recipe": {**type(cfg)().model_dump(mode="json"), **state.get("recipe", {})}, **state.get("setup", {})}
    now = {"recipe": cfg.model_dump(mode="json"), **setup}
    where = f"a finished {what}" if "result" in state else f"a {what} interrupted at step {state['step']}"
    refuse_changed(
        run_dir, f"{where} with another recipe or source", changed_keys(saved, now, [f"recipe.{k}" for k in free]),
        f"Pass another --out for the new {what} (its directory is the result file's path without .json), "
        f"or delete {run_dir} to start over.",
    )


def resume(run: Any, kind: str, what: str, check: Callable[[Path, dict[str, Any]], None]) -> None:
    """Load the newest checkpoint of ``run.run_dir`` (if any) after ``check(run_dir, state)``.

    Restores the weights, optimizer, grad scaler, step, history, running loss sums, training
    seconds and (as the first epoch starts) this rank's RNG states; a finished run gets its stored
    ``result`` (and its final weights) only.

    Raises:
        ConfigError: From ``check``: another recipe, source, process count or precision.
        CheckpointError: The checkpoint is unreadable or not of ``kind``.
    """
    if run.run_dir is None:
        return
    run_dir = run.run_dir

    def load(ckpt: Path) -> dict[str, Any]:
        state = load_state(ckpt)
        if state.get("kind") != kind:
            raise CheckpointError(
                f"{ckpt} is not a {what} checkpoint (it has no kind {kind!r}); {run_dir} is a {what} "
                "directory: pass another --out (the result file names the directory)"
            )
        check(run_dir, state)
        load_weights(run.model, ckpt / "model.safetensors")
        return state

    found = load_newest_on_every_rank(run_dir, load, run.dist.is_main)
    if found is None:
        return
    ckpt, state = found
    run.step, run.history = int(state["step"]), list(state["history"])
    run.last_ckpt, run.last_ckpt_step = ckpt, run.step
    if "result" in state:
        run.result = state["result"]
        LOG.info("the %s in %s is finished (step %d): its result is reported without training; delete %s "
                 "to train again", what, run_dir, run.step, run_dir)
        return
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler") is not None:
        run.scaler.load_state_dict(state["scaler"])
    mine = state["ranks"][run.dist.rank]
    run.loss_sum, run.loss_n = float(mine["loss_sum"]), int(mine["loss_n"])
    run.clock = TrainClock(float(state.get("train_time_s", 0.0)))
    run.resume_rng = mine["rng"]
    LOG.info("resuming the %s from %s (step %d of %d)", what, ckpt, run.step, run.total_steps)


def run_supervised(
    build: Callable[[], Any], resume_run: Callable[[Any], None], log_header: Callable[[Any], None],
    run_dir: Path | None, dist: D.DistInfo, progress: bool = True,
) -> Any:
    """Check ``run_dir`` can be written, hold its lock, build the task, resume it, train it with
    :func:`~hpm.engine.loop.run_epochs` (unless it is finished) and return it.

    Args:
        build: Sets the task up (seeds, model, data, optimizer); called once, inside the lock.
        resume_run: Restores the task from ``run_dir`` (e.g. :func:`resume` with its kind).
        log_header: Logs what is trained, once it is known not to be finished.
        run_dir: The task's directory (None: no checkpoints, no resumption, no stop signals).
        dist: This process's place in a torchrun job.
        progress: Show a progress bar (rank 0).
    """
    reap_daemons_at_exit()
    if run_dir is not None:
        check_output_dir(run_dir, "--out")
    run = None
    try:
        with RunDirLock(run_dir, dist.is_main) if run_dir is not None else nullcontext():
            if run_dir is not None and dist.is_main and (run_dir / "train.log").is_file():
                log_to_file(run_dir / "train.log")  # a resume: its warnings, and a refusal, reach the log
            run = build()
            resume_run(run)
            if run.result is None:
                if run_dir is not None and dist.is_main:
                    log_to_file(run_dir / "train.log")
                log_header(run)
                run.clock = TrainClock(run.clock.before)  # training time starts now (plus earlier invocations')
                run_epochs(run, progress)
        assert run.result is not None  # the last epoch sets it
        return run
    except BaseException as exc:
        log_run_failure(exc)
        raise
    finally:
        if run is not None:
            close_loader(run.loader)
        if run_dir is not None:
            stop_logging_to(run_dir / "train.log")  # the next fine-tune of a study logs to its own
