"""Resuming a fine-tune from its directory, and the refusal to resume another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.engine import supervised
from hpm.eval.finetune.task import Finetuning
from hpm.eval.recipes import FinetuneConfig

# Recipe keys that may change when an interrupted fine-tune resumes: they set resources and
# bookkeeping, not what is trained (num_workers does move the augmentation randomness into
# worker processes, so only num_workers=0 resumes bit-exactly).
RESUME_FREE_KEYS = ("ckpt_every_steps", "num_workers", "eval_batch_size")


def resume(run: Finetuning) -> None:
    """Restore ``run`` from the newest checkpoint of its directory, if it holds this fine-tune
    (:func:`hpm.engine.supervised.resume`)."""
    supervised.resume(run, "finetune", "fine-tune", lambda run_dir, state: check_same_finetune(
        run_dir, state, run.cfg, run.setup))


def check_same_finetune(run_dir: Path, state: dict[str, Any], cfg: FinetuneConfig, setup: dict[str, Any]) -> None:
    """Refuse to resume (or report) a fine-tune of another recipe or source (every recipe key but
    :data:`RESUME_FREE_KEYS`, what was fine-tuned, the process count and the precision).

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    supervised.check_same(run_dir, state, cfg, setup, "fine-tune", RESUME_FREE_KEYS)
