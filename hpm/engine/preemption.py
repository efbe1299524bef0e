"""Stop signals: SIGTERM, SIGUSR1 or Ctrl-C stop a run after its current optimizer step.

A cluster scheduler gives a preempted job tens of seconds (SLURM sends SIGTERM, or SIGUSR1
ahead of time with ``--signal=USR1@120``); a person presses Ctrl-C (SIGINT). :class:`StopSignals`
turns each into a flag that the training loop reads once per optimizer step; under torchrun the
ranks agree on it (maximum over ranks), so every rank stops at the same step. The loop then
writes a checkpoint and raises :class:`~hpm.errors.Preempted`, and the command exits with
``128 + signal`` (143 for SIGTERM, 138 for SIGUSR1, 130 for Ctrl-C). Re-running the command
resumes from that checkpoint. A second Ctrl-C stops at once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from hpm.engine import distributed as D
from hpm.engine.logger import LOG
from hpm.errors import Preempted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` for DataLoader workers: the main process handles the stop signals
    (a worker killed by a signal sent to the whole process group, as Ctrl-C is, would abort the run)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopSignals:
    """Context manager that records the first SIGTERM / SIGUSR1 / SIGINT instead of dying on it;
    a second SIGINT raises ``KeyboardInterrupt`` at once.

    Handlers are installed only in the main thread (elsewhere signals keep their handlers) and
    the previous ones are restored on exit.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.signum:
            self.signum = signum
            again = " (Ctrl-C again stops at once, without a checkpoint)" if signum == signal.SIGINT else ""
            LOG.warning("received %s: stopping after the current optimizer step%s", signal.Signals(signum).name, again)

    def agreed(self, device: torch.device) -> int:
        """The stop signal every rank acts on now (0: go on); a collective under torchrun."""
        if not D.is_distributed():
            return self.signum
        return int(D.all_reduce_max(torch.tensor([self.signum], device=device)).item())


def preempted(what: str, signum: int, step: int, total_steps: int, where: object) -> Preempted:
    """Log the stop and return the :class:`~hpm.errors.Preempted` to raise (``what``: e.g. "fine-tune")."""
    message = (
        f"{what} stopped by signal {signum} after step {step} of {total_steps}; checkpoint {where}. "
        f"Re-run the same command to resume from step {step}."
    )
    LOG.warning(message)
    return Preempted(message, signum)
