"""One run per directory: an exclusive lock on the run directory for the whole run.

The lock is a POSIX record lock (``fcntl.lockf``) on ``RUN_DIR/run.lock``, so the system
releases it when the process ends however it ends (a SIGKILL included): a killed run never
leaves its directory stuck. Unlike ``flock``, a record lock belongs to the process and is not
inherited by forked children, so DataLoader workers that outlive a killed run for a moment do
not keep the directory. The file holds the process id and host of the holder, for the message a
second run prints.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
from pathlib import Path
from types import TracebackType

from hpm.errors import RunDirInUse

LOCK_NAME = "run.lock"
_HELD: dict[Path, int] = {}  # run directories this process holds: how many nested holders


class RunDirLock:
    """Context manager holding the run directory's lock (rank 0 only; other ranks hold nothing).

    A directory that did not exist is created for the lock; if the run then fails before writing
    anything else there, the directory is removed again, so a refused run leaves nothing behind.
    """

    def __init__(self, run_dir: str | Path, is_main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self._fd: int | None = None
        self._created = False
        self._nested = False

    def __enter__(self) -> "RunDirLock":
        if not self.is_main:
            return self
        key = self.run_dir.absolute()
        if key in _HELD:  # the command holds it around the engine's run: nothing more to take
            _HELD[key] += 1
            self._nested = True
            return self
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirInUse(
                f"{self.run_dir} is in use by {holder}: one run per directory. Wait for it to end, stop it, "
                "or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        _HELD[key] = 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        key = self.run_dir.absolute()
        if self._nested:
            _HELD[key] -= 1
            self._nested = False
            return
        if self._fd is None:
            return
        _HELD.pop(key, None)
        os.close(self._fd)  # releases the lock
        self._fd = None
        leftovers = [p.name for p in self.run_dir.iterdir() if p.name != LOCK_NAME]
        if self._created and not leftovers:
            shutil.rmtree(self.run_dir, ignore_errors=True)
