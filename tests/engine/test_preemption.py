"""SIGTERM / SIGUSR1 / Ctrl-C: the run finishes its optimizer step, checkpoints, exits 128 + signal,
and re-running the command resumes with the losses of an uninterrupted run (1 and 2 processes);
a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hpm.config import build_config
from hpm.engine.checkpoint import latest_checkpoint, load_state
from hpm.engine.logger import read_metrics
from hpm.engine.train import pretrain
from tests.conftest import (
    assert_no_gloo_threads, needs_fmnist, pretrain_args, ranks_env, stderr_tail, tiny_overrides, torchrun_probed,
    torchrun_worker,
)

STEPS = 3 * (512 // 32)  # 3 epochs of 16 steps


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def _wait_for_step(run: Path, proc: subprocess.Popen, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(s >= step for s, _ in _losses(run)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run never reached step {step} (exit {proc.poll()})")


def _overrides(tmp_path: Path, name: str, batch: int = 32) -> dict:
    # one worker process: a signal sent to the whole group must not kill the data loader
    out = tiny_overrides(tmp_path / name, data={"subset": 512, "num_workers": 1}, train={"epochs": 3})
    out["train"]["batch_size"] = batch
    return out


@needs_fmnist
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138), (signal.SIGINT, 130)])
def test_stop_signal_checkpoints_the_step_and_resumes_exactly(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    clean = _overrides(tmp_path, "clean")
    pretrain(build_config(overrides=clean))
    reference = _losses(Path(clean["output_dir"]))
    assert len(reference) == STEPS

    stopped = _overrides(tmp_path, "stopped")
    run = Path(stopped["output_dir"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *pretrain_args(stopped)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_step(run, proc, 5)
    os.killpg(proc.pid, sig)  # the whole process group, as a scheduler does (data-loader worker included)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert "re-run the same command to resume" in err.lower()
    ckpt = latest_checkpoint(run)
    stopped_at = load_state(ckpt)["step"]
    logged = _losses(run)
    assert 5 <= stopped_at < STEPS and ckpt.name == f"step_{stopped_at:08d}"
    assert logged[-1][0] == stopped_at, "the checkpoint holds the last finished (and logged) step"
    assert f"resume from step {stopped_at}." in err

    resumed = subprocess.run([sys.executable, "-m", "hpm.cli", *pretrain_args(stopped)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = _losses(run)
    assert [s for s, _ in got] == [s for s, _ in reference]  # no lost or repeated step
    np.testing.assert_allclose([v for _, v in got], [v for _, v in reference], rtol=1e-5)


@needs_fmnist
def test_stop_signal_to_one_of_two_gloo_processes_stops_both_at_the_same_step(tmp_path: Path) -> None:
    single = _overrides(tmp_path, "single")
    pretrain(build_config(overrides=single))
    reference = _losses(Path(single["output_dir"]))

    ddp = _overrides(tmp_path, "ddp", batch=16)  # 2 x 16: the same global batch
    ddp["data"]["num_workers"] = 0
    run = Path(ddp["output_dir"])
    env = ranks_env()
    launch = [*torchrun_probed(tmp_path), *pretrain_args(ddp)]
    proc = subprocess.Popen(launch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, proc, 5)
    rank1 = torchrun_worker(proc.pid, 1)
    os.kill(rank1, signal.SIGTERM)  # only rank 1 hears it: the ranks must agree to stop together
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "143" in err, stderr_tail(err)
    assert_no_gloo_threads(tmp_path)  # a stopped run ends its process group too
    stopped_at = load_state(latest_checkpoint(run))["step"]
    assert 5 <= stopped_at < STEPS and _losses(run)[-1][0] == stopped_at

    resumed = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, stderr_tail(resumed.stderr)
    got = _losses(run)
    assert [s for s, _ in got] == [s for s, _ in reference]
    # 2 processes vs 1 differ only in float summation order (see test_distributed.py)
    np.testing.assert_allclose([v for _, v in got], [v for _, v in reference], rtol=1e-4)


@needs_fmnist
def test_a_second_ctrl_c_stops_at_once_and_says_where_a_rerun_resumes(tmp_path: Path) -> None:
    overrides = _overrides(tmp_path, "twice")
    overrides["model"].update(embed_dim=192, depth=6, num_heads=3)  # steps long enough to land inside one
    overrides["train"]["ckpt_every_steps"] = 2
    run = Path(overrides["output_dir"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *pretrain_args(overrides)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_step(run, proc, 3)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    started = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - started < 15, "a second Ctrl-C must not wait for the step, a checkpoint or the workers"
    assert proc.returncode == 130, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("hpm pretrain:")]
    ckpt_step = load_state(latest_checkpoint(run))["step"]
    assert line and "interrupted at once at step" in line[-1], err[-2000:]
    assert f"re-run the same command to resume from step {ckpt_step}" in line[-1]
    assert "Traceback" not in err
