"""Run logging: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard and a text log."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

LOG = logging.getLogger("hpm")


def setup_logging(is_main: bool = True) -> None:
    """Console logging (rank 0 only)."""
    LOG.setLevel(logging.INFO if is_main else logging.WARNING)
    LOG.propagate = False
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(console)


def log_to_file(path: Path) -> None:
    """Also append the log to ``path`` (e.g. ``RUN_DIR/train.log``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path)
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(file)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """Appends step records to ``metrics.jsonl`` and TensorBoard (a no-op off rank 0).

    On resume, records after ``resume_step`` (logged after the last checkpoint by an
    interrupted run) are dropped so that no step appears twice; ``append`` keeps every record
    (evaluations added after training).
    """

    def __init__(
        self, run_dir: Path, enabled: bool = True, resume_step: int | None = None, append: bool = False
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer: SummaryWriter | None = None
        if not enabled:
            return
        if append:  # after the run: add records (e.g. the final k-NN), keep everything logged
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            return
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: dict[str, Any]) -> None:
        """Write one record; every numeric field except ``step`` also goes to TensorBoard."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        assert self.writer is not None
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"pretrain/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class SkippedFiles:
    """Unreadable images skipped during a run: the first ``named`` are logged by name (so they
    can be fixed or removed), the rest only counted."""

    def __init__(self, named: int = 10) -> None:
        self.named = named
        self.count = 0

    def add(self, paths: list[str]) -> None:
        """Record the unreadable files of one batch."""
        for path in paths:
            self.count += 1
            if self.count <= self.named:
                LOG.warning("skipped unreadable image %s", path)
            if self.count == self.named + 1:
                LOG.warning("more unreadable images are skipped; only their count is logged from here on")
