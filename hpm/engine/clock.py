"""The training clock: wall seconds spent training a run, over all its invocations."""

from __future__ import annotations

import time


class TrainClock:
    """Wall seconds spent training this run, over all invocations, evaluation excluded."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()
        self.excluded = 0.0

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start - self.excluded
