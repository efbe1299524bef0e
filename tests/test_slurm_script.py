"""scripts/slurm_pretrain.sbatch outside SLURM: its launch line (torchrun, c10d rendezvous on the
local machine, 2 CPU processes) trains, and USR1 to the script stops every rank at one step with
a checkpoint, from which the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpm.engine.checkpoint import latest_checkpoint, load_state
from hpm.engine.logger import read_metrics
from tests.conftest import needs_fmnist, override_args, ranks_env, stderr_tail, tiny_overrides

SCRIPT = Path(__file__).parents[1] / "scripts" / "slurm_pretrain.sbatch"


def _overrides(tmp_path: Path) -> list[str]:
    return override_args(tiny_overrides(tmp_path, data={"subset": 512, "num_workers": 0}, train={"epochs": 3, "batch_size": 16}))


def _steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow
@needs_fmnist
def test_usr1_to_the_script_checkpoints_and_the_same_command_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = ranks_env(NPROC="2", PORT="29533")
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]
    cmd = ["bash", str(SCRIPT), str(run), *_overrides(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not any(s >= 5 for s in _steps(run)):
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    os.kill(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "stopped by USR1" in err, stderr_tail(err)
    stopped_at = load_state(latest_checkpoint(run))["step"]
    assert 5 <= stopped_at < 48 and _steps(run)[-1] == stopped_at

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, stderr_tail(again.stderr)
    assert _steps(run) == list(range(1, 49))  # 3 epochs x 16 steps of 2 x 16 images, none lost or repeated
