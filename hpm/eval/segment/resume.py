"""Resuming a segmentation fine-tune from its directory, and the refusal to resume another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.engine import supervised
from hpm.eval.segment.recipes import SegmentConfig
from hpm.eval.segment.task import Segmenting

# Recipe keys that may change when an interrupted run resumes: resources and bookkeeping.
RESUME_FREE_KEYS = ("ckpt_every_steps", "num_workers")


def resume(run: Segmenting) -> None:
    """Restore ``run`` from the newest checkpoint of its directory, if it holds this run
    (:func:`hpm.engine.supervised.resume`)."""
    supervised.resume(run, "segment", "segmentation fine-tune", lambda run_dir, state: check_same_segment(
        run_dir, state, run.cfg, run.setup))


def check_same_segment(run_dir: Path, state: dict[str, Any], cfg: SegmentConfig, setup: dict[str, Any]) -> None:
    """Refuse to resume (or report) a run of another recipe or source.

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    supervised.check_same(run_dir, state, cfg, setup, "segmentation fine-tune", RESUME_FREE_KEYS)
