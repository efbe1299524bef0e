"""Run logging: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard and a text log."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from hpm.errors import HpmError, Preempted

LOG = logging.getLogger("hpm")


class _ToRunLog(logging.Handler):
    """Sends other libraries' log records and Python warnings to the run's log files, never to the
    console; records from before a log file is opened wait (at most :attr:`KEEP`) and go to the
    first one."""

    KEEP = 200

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.pending: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        files = [h for h in LOG.handlers if isinstance(h, logging.FileHandler)]
        if not files:
            if len(self.pending) < self.KEEP:
                self.pending.append(record)
            return
        for handler in files:
            handler.handle(record)

    def flush_to(self, handler: logging.Handler) -> None:
        """Write the records that waited for a log file to ``handler``."""
        pending, self.pending = self.pending, []
        for record in pending:
            handler.handle(record)


_THIRD_PARTY = _ToRunLog()


def _route_third_party_to_run_log() -> None:
    """Other libraries' warnings (``logging`` and ``warnings``) go to the run's log files only."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    if _THIRD_PARTY not in root.handlers:
        root.addHandler(_THIRD_PARTY)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def setup_logging(is_main: bool = True) -> None:
    """Console logging of hpm's own records (rank 0 only); other libraries' warnings go to the
    run's log file, not the console."""
    _route_third_party_to_run_log()
    LOG.setLevel(logging.INFO if is_main else logging.WARNING)
    LOG.propagate = False
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(console)


def log_to_file(path: Path) -> None:
    """Also append the log to ``path`` (e.g. ``RUN_DIR/train.log``); a second call for the same file does nothing."""
    if Path(path).absolute() in log_files():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    file = _LogFile(path)
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(file)
    _THIRD_PARTY.flush_to(file)


class _LogFile(logging.FileHandler):
    """A log file that, when it cannot be written (a full disk), says so once on the console
    instead of printing logging's traceback for every record."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # e.g. DataLoader's SIGCHLD handler firing inside the write
            raise error  # type: ignore[misc]
        if not self.failed:
            self.failed = True
            print(f"hpm: cannot write the log file {self.baseFilename} ({error}); logging to the console only",
                  file=sys.stderr)


def stop_logging_to(path: Path) -> None:
    """Stop appending the log to ``path`` (set by :func:`log_to_file`)."""
    for handler in list(LOG.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == Path(path).absolute():
            LOG.removeHandler(handler)
            handler.close()


def log_files() -> list[Path]:
    """The files the log is appended to now (set by :func:`log_to_file`)."""
    return [Path(h.baseFilename) for h in LOG.handlers if isinstance(h, logging.FileHandler)]


def log_failure_to_file(exc: BaseException, message: str, traceback: bool = True) -> list[Path]:
    """Write an ERROR record of ``message`` (with ``exc``'s traceback) to the log files only:
    the console shows one line, printed by the caller. Returns the files written."""
    handlers = [h for h in LOG.handlers if isinstance(h, logging.FileHandler)]
    if not handlers:
        return []
    exc_info = (type(exc), exc, exc.__traceback__) if traceback else None
    record = LOG.makeRecord(LOG.name, logging.ERROR, __file__, 0, "%s", (message,), exc_info)
    for handler in handlers:
        for _ in range(3):
            try:
                handler.handle(record)
                handler.flush()
                break
            except OSError:  # a full disk must not hide the error being reported
                break
            except Exception:  # noqa: BLE001 - DataLoader's SIGCHLD handler raised inside the write
                continue  # (another dead worker): write the record again
    return [Path(h.baseFilename) for h in handlers]


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
        """Flush and close TensorBoard (idempotent; a full disk here does not hide the run's own error)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass


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


def log_run_failure(exc: BaseException) -> None:
    """Write why a run (pre-training, fine-tune) ended to its log file (``train.log``): the message of an
    :class:`~hpm.errors.HpmError`, the traceback of anything else. A stop signal was logged when
    it arrived. Marks ``exc`` so that the command does not log it again."""
    if isinstance(exc, Preempted) or getattr(exc, "hpm_logged", False):
        return
    if isinstance(exc, HpmError):
        written = log_failure_to_file(exc, f"error: {exc}", traceback=False)
    elif isinstance(exc, KeyboardInterrupt):
        written = log_failure_to_file(exc, str(exc) or "interrupted (Ctrl-C)", traceback=False)
    else:
        written = log_failure_to_file(exc, f"error: {type(exc).__name__}: {exc}")
    if written:
        try:
            exc.hpm_logged = written  # type: ignore[attr-defined]  # where the command says the traceback is
        except AttributeError:
            pass
