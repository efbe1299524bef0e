"""Resuming a detection fine-tune from its directory, and the refusal to resume another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.engine.checkpoint import load_newest_on_every_rank, load_state, load_weights
from hpm.engine.clock import TrainClock
from hpm.engine.logger import LOG
from hpm.engine.resume import changed_keys, refuse_changed
from hpm.errors import CheckpointError
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.detect.task import Detecting
from hpm.eval.segment.resume import RESUME_FREE_KEYS


def resume(run: Detecting) -> None:
    """Load the newest checkpoint of ``run.run_dir`` (if any) after checking it is this run.

    Restores the weights, optimizer, grad scaler, step, history, running loss sums, training
    seconds and (as the first epoch starts) this rank's RNG states; a finished run gets its stored
    ``result`` only.

    Raises:
        ConfigError: The checkpoint is of another recipe, source, process count or precision.
        CheckpointError: The checkpoint is unreadable or not a detection run's.
    """
    if run.run_dir is None:
        return
    run_dir = run.run_dir

    def load(ckpt: Path) -> dict[str, Any]:
        state = load_state(ckpt)
        if state.get("kind") != "detect":
            raise CheckpointError(f"{ckpt} is not a detection checkpoint (it has no kind 'detect'); pass "
                                  "another --out (the result file names the directory)")
        check_same_detect(run_dir, state, run.cfg, run.setup)
        load_weights(run.model, ckpt / "model.safetensors")
        return state

    found = load_newest_on_every_rank(run_dir, load, run.dist.is_main)
    if found is None:
        return
    ckpt, state = found
    run.step, run.history = int(state["step"]), list(state["history"])
    run.last_ckpt, run.last_ckpt_step = ckpt, run.step
    if "result" in state:
        run.result = state["result"]
        LOG.info("the detection fine-tune in %s is finished (step %d): its result is reported without "
                 "training; delete %s to train again", run_dir, run.step, run_dir)
        return
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler") is not None:
        run.scaler.load_state_dict(state["scaler"])
    mine = state["ranks"][run.dist.rank]
    run.loss_sum, run.loss_n = float(mine["loss_sum"]), int(mine["loss_n"])
    run.clock = TrainClock(float(state.get("train_time_s", 0.0)))
    run.resume_rng = mine["rng"]
    LOG.info("resuming the detection fine-tune from %s (step %d of %d)", ckpt, run.step, run.total_steps)


def check_same_detect(run_dir: Path, state: dict[str, Any], cfg: DetectConfig, setup: dict[str, Any]) -> None:
    """Refuse to resume (or report) a run of another recipe or source.

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    saved = {"recipe": {**DetectConfig().model_dump(mode="json"), **state.get("recipe", {})}, **state.get("setup", {})}
    now = {"recipe": cfg.model_dump(mode="json"), **setup}
    interrupted = f"a detection fine-tune interrupted at step {state['step']}"
    where = "a finished detection fine-tune" if "result" in state else interrupted
    refuse_changed(
        run_dir, f"{where} with another recipe or source",
        changed_keys(saved, now, [f"recipe.{k}" for k in RESUME_FREE_KEYS]),
        "Pass another --out (its directory is the result file's path without .json), "
        f"or delete {run_dir} to start over.",
    )
