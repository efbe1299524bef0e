"""The run engine: the epochs of any task, its checkpoints, stop signals and faults.

A task (pre-training, a fine-tune, ...) supplies its model, data, loss and evaluation through the
:class:`Task` protocol: how an epoch's batches start, one optimizer step, the end of an epoch,
what each rank adds to a checkpoint and how rank 0 writes it. :func:`run_epochs` owns the rest:
the epoch loop from the resume point, a checkpoint every ``ckpt_every_steps`` optimizer steps,
checkpoint-then-barrier, the stop on SIGTERM / SIGUSR1 / Ctrl-C after the current step (with a
checkpoint, raising :class:`~hpm.errors.Preempted`), a second Ctrl-C at once
(:class:`~hpm.errors.Interrupted`, naming the step a re-run resumes from), and the progress bar.
Under torchrun every rank runs the same loop and the engine's collectives line up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from hpm.engine import distributed as D
from hpm.engine.clock import TrainClock
from hpm.engine.preemption import StopSignals, preempted
from hpm.errors import Interrupted, NonFiniteLossError


class Task(Protocol):
    """What a task gives the engine; the engine reads and sets the attributes below."""

    what: str  # names the task in messages: "training", "fine-tune"
    run_dir: Path | None  # checkpoints go to run_dir/checkpoints/ (None: no checkpoints, no stop signals)
    dist: D.DistInfo
    device: torch.device
    steps_per_epoch: int
    epochs: int
    ckpt_every_steps: int  # 0: only the task's own checkpoints at the end of epochs
    step: int  # optimizer steps done
    last_ckpt: Path | None  # rank 0: the newest checkpoint written or resumed from
    last_ckpt_step: int | None  # every rank: its step
    clock: TrainClock

    def start_epoch(self, epoch: int, first: int) -> Iterator[Any]:
        """The epoch's batches, from its optimizer step ``first`` (a resume inside the epoch)."""

    def train_step(self, batches: Iterator[Any], epoch: int, bar: tqdm) -> None:
        """One optimizer step over the next batches; adds 1 to ``step``."""

    def end_of_epoch(self, epoch: int) -> None:
        """Evaluation and the epoch's checkpoint (through :func:`write_checkpoint`), as the task wants."""

    def check_finite(self) -> None:
        """Raise :class:`~hpm.errors.NonFiniteLossError` if a loss so far was NaN or infinite."""

    def rank_state(self) -> Any:
        """This rank's part of a checkpoint (gathered from every rank; picklable)."""

    def save(self, ranks: list[Any]) -> Path:
        """Rank 0: write the checkpoint of ``step`` with every rank's :meth:`rank_state`; its path."""


def total_steps(task: Task) -> int:
    """Optimizer steps of the whole run."""
    return task.steps_per_epoch * task.epochs


def run_epochs(task: Task, progress: bool = True) -> None:
    """Train ``task`` from its resume point to its last epoch.

    Raises:
        Preempted: A stop signal arrived; a checkpoint of the last finished step was written.
        Interrupted: A second Ctrl-C stopped the run at once.
        NonFiniteLossError: A loss became NaN or infinite (no checkpoint of that step is written).
    """
    signals = StopSignals() if task.run_dir is not None else nullcontext()
    bar = tqdm(total=total_steps(task), initial=task.step, disable=not (progress and task.dist.is_main),
               unit="step", dynamic_ncols=True)
    with signals as stop, bar:  # the bar is closed before an error is printed
        try:
            for epoch in range(task.step // task.steps_per_epoch, task.epochs):
                train_epoch(task, epoch, stop, bar)
                task.end_of_epoch(epoch)
                stop_if_asked(task, stop)
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted) or task.run_dir is None:
                raise
            raise interrupted(task) from None
    task.check_finite()


def train_epoch(task: Task, epoch: int, stop: StopSignals | None, bar: tqdm) -> None:
    """The epoch's optimizer steps from the resume point inside it; a checkpoint every
    ``ckpt_every_steps`` steps and a stop on a signal (the epoch's end is the task's)."""
    first = task.step - epoch * task.steps_per_epoch  # steps of this epoch done before a resume
    batches = task.start_epoch(epoch, first)
    for _ in range(first, task.steps_per_epoch):
        task.train_step(batches, epoch, bar)
        bar.update(1)
        if task.step % task.steps_per_epoch:
            every = task.ckpt_every_steps
            if task.run_dir is not None and every and task.step % every == 0:
                write_checkpoint(task)
            stop_if_asked(task, stop)


def write_checkpoint(task: Task) -> Path | None:
    """Check the losses are finite, gather every rank's state, write the checkpoint of
    ``task.step`` (rank 0) and wait for every rank. A collective under torchrun."""
    task.check_finite()
    ranks = D.all_gather_objects(task.rank_state())
    if task.dist.is_main:
        task.last_ckpt = task.save(ranks)
    task.last_ckpt_step = task.step
    D.barrier()
    return task.last_ckpt


def stop_if_asked(task: Task, stop: StopSignals | None) -> None:
    """After a stop signal on any rank: checkpoint the finished step unless it was just written,
    and raise :class:`~hpm.errors.Preempted`; a finished run just ends. A collective under
    torchrun: every rank calls it at the same points."""
    if stop is None:
        return
    signum = stop.agreed(task.device)
    if not signum or task.step >= total_steps(task):
        return
    if task.last_ckpt_step != task.step:
        write_checkpoint(task)
    where = task.last_ckpt if task.dist.is_main else "rank 0's run directory"
    raise preempted(task.what, signum, task.step, total_steps(task), where)


def interrupted(task: Task) -> Interrupted:
    """The error of a run stopped at once by a second Ctrl-C; it says where a re-run resumes."""
    if task.last_ckpt_step is None:
        then = "no checkpoint was written yet, so a re-run starts from step 0"
    else:
        then = f"re-run the same command to resume from step {task.last_ckpt_step}"
    return Interrupted(f"{task.what} interrupted at once at step {task.step} of {total_steps(task)}; {then}")


def non_finite_loss(loss: str, step: int, epoch: int, last_ckpt: Path | None, keys: str = "") -> NonFiniteLossError:
    """The error of a NaN or infinite loss at ``step`` (``loss``: "loss", "fine-tuning loss", ...;
    ``keys``: the prefix of the config keys the hint names, e.g. "train.")."""
    return NonFiniteLossError(
        f"the {loss} became NaN or infinite at step {step} (epoch {epoch}). "
        f"The last good checkpoint is kept: {last_ckpt or 'none was written yet'}. "
        f"Try a lower {keys}blr, {keys}clip_grad=1.0 or {keys}precision=fp32."
    )
