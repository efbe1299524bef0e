"""Ending a process cleanly after an error: DataLoader workers stopped, and an exit that cannot hang.

A DataLoader worker ignores SIGTERM (:func:`hpm.engine.preemption.ignore_stop_signals`: the main
process handles preemption). If an exception leaves a loader's iterator alive until the
interpreter exits, multiprocessing's exit handler sends its daemon workers SIGTERM and joins them
for ever: the run printed its error and then hung. :func:`close_loader` stops a loader's workers
where the loop ends; :func:`reap_daemons_at_exit` registers, once, an exit handler that runs
before multiprocessing's and kills daemon children still alive after a short grace period.
"""

from __future__ import annotations

import atexit
import multiprocessing
import time

from torch.utils.data import DataLoader

_GRACE_S = 1.0  # how long daemon children may take to end by themselves at exit
_registered = False


def close_loader(loader: DataLoader | None) -> None:
    """Stop the worker processes of ``loader``'s persistent iterator, if it has one (idempotent)."""
    if loader is None:
        return
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    loader._iterator = None  # type: ignore[attr-defined]


def reap_daemons() -> int:
    """Terminate daemon child processes still alive, then kill those that ignore it; returns how many were left."""
    children = [p for p in multiprocessing.active_children() if p.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + _GRACE_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join(1.0)
    return len(children)


def reap_daemons_at_exit() -> None:
    """Register :func:`reap_daemons` to run at interpreter exit, before multiprocessing joins its children."""
    global _registered
    if not _registered:
        atexit.register(reap_daemons)
        _registered = True
