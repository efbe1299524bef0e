"""Resuming a detection fine-tune from its directory, and the refusal to resume another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.engine import supervised
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.detect.task import Detecting
from hpm.eval.segment.resume import RESUME_FREE_KEYS


def resume(run: Detecting) -> None:
    """Restore ``run`` from the newest checkpoint of its directory, if it holds this run
    (:func:`hpm.engine.supervised.resume`)."""
    supervised.resume(run, "detect", "detection fine-tune", lambda run_dir, state: check_same_detect(
        run_dir, state, run.cfg, run.setup))


def check_same_detect(run_dir: Path, state: dict[str, Any], cfg: DetectConfig, setup: dict[str, Any]) -> None:
    """Refuse to resume (or report) a run of another recipe or source.

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    supervised.check_same(run_dir, state, cfg, setup, "detection fine-tune", RESUME_FREE_KEYS)
