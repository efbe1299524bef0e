"""Failures end a run cleanly and lose nothing: a full disk (a real tmpfs where the machine allows
it), a truncated newest checkpoint, a stop inside a logging window, a non-finite loss, an
exception while DataLoader workers are alive."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hpm.config import build_config
from hpm.engine.checkpoint import CKPT_DIR, DAMAGED_DIR, latest_checkpoint, list_checkpoints, load_state
from hpm.engine.integrity import verify_checkpoint
from hpm.engine.logger import read_metrics
from hpm.engine.train import pretrain
from hpm.errors import NonFiniteLossError
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides

TIMING = ("img_per_s", "time_s")  # wall-clock fields: the only ones a resumed run may change
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def records(run: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` without its wall-clock fields."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.jsonl")]


def cli(overrides: dict[str, Any], *extra: str) -> list[str]:
    return [sys.executable, "-m", "hpm.cli", *pretrain_args(overrides), *extra]


def run_cli(overrides: dict[str, Any], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(overrides), env=ENV, capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never reached: {what} (exit {proc.poll()})")


def last_step(run: Path) -> int:
    logged = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    return logged[-1] if logged else 0


def _windows(tmp: Path, name: str, **train: Any) -> dict[str, Any]:
    """24 steps (3 epochs of 8), a record every 5 steps: checkpoints fall inside logging windows."""
    return tiny_overrides(tmp / name, train={"epochs": 3, "log_every": 5, "ckpt_every_steps": 3, **train})


# --------------------------------------------------------------------------- full disk
def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _du(path: Path) -> int:
    return sum(-(-f.stat().st_size // 4096) * 4096 for f in path.rglob("*") if f.is_file())


@needs_fmnist
def test_a_full_disk_ends_the_run_in_seconds_with_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    """Run directory on a tmpfs with room for one checkpoint: the second fails to write."""
    sizing = tiny_overrides(tmp_path / "sizing", data={"num_workers": 1}, train={"epochs": 1})
    assert run_cli(sizing).returncode == 0
    sized = Path(sizing["output_dir"])
    ckpt_bytes = _du(latest_checkpoint(sized))
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, _du(sized) + ckpt_bytes // 2):
        pytest.skip("cannot mount a tmpfs here (needs root); tests/test_fault_injection.py covers ENOSPC by a write wrapper")
    try:
        full = tiny_overrides(disk, data={"num_workers": 1}, train={"epochs": 2})  # worker processes alive
        run = Path(full["output_dir"])
        proc = subprocess.Popen(cli(full), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: last_step(run) >= 16, proc, what="the last step before the failing checkpoint")
        failed_at = time.time()
        out, err = proc.communicate(timeout=60)
        ended_in = time.time() - failed_at
        assert proc.returncode == 2, err[-3000:]
        assert ended_in < 10, f"took {ended_in:.1f} s to exit after the failed write"
        lines = [line for line in err.splitlines() if "hpm pretrain:" in line]
        assert len(lines) == 1 and "error: the disk is full" in lines[0], err[-3000:]
        assert "Traceback" not in err and "Traceback" not in out
        good = latest_checkpoint(run)
        assert good is not None and good.name == "step_00000008" and verify_checkpoint(good) == []
        assert f"The last good checkpoint is {good} (intact)" in lines[0] and "needs about" in lines[0]
        assert [p.name for p in (run / CKPT_DIR).iterdir()] == [good.name]  # no partial folder left
        assert "ERROR error: the disk is full" in (run / "train.log").read_text()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --------------------------------------------------------------------------- damaged checkpoints
@needs_fmnist
def test_a_truncated_newest_checkpoint_falls_back_and_the_logs_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    clean = _windows(tmp_path, "clean")
    assert run_cli(clean).returncode == 0
    broken = _windows(tmp_path, "broken")
    run = Path(broken["output_dir"])
    proc = subprocess.Popen(cli(broken), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # by the folder's name (step_<step>, renamed into place when complete): reading a checkpoint's state
    # here could race with the run pruning it
    wait_for(lambda: any(int(c.name.split("_")[-1]) >= 15 for c in list_checkpoints(run)), proc, what="step 15")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    previous, newest = list_checkpoints(run)[-2:]
    state = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(state[: len(state) // 3])  # a copy that stopped part-way
    resumed = run_cli(broken)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint {newest} is damaged (state.pt has" in resumed.stderr
    assert f"resuming from {previous}" in resumed.stderr
    assert (run / CKPT_DIR / DAMAGED_DIR / newest.name / "state.pt").stat().st_size == len(state) // 3
    assert "is damaged" in (run / "train.log").read_text()  # the warning reaches the run's log
    assert records(run) == records(Path(clean["output_dir"]))  # record for record, value for value


@needs_fmnist
@pytest.mark.parametrize("stop_after", [7, 13])
def test_a_stop_inside_a_logging_window_resumes_with_the_uninterrupted_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: int
) -> None:
    """SIGTERM during step 7 (window 6-10) or 13 (window 11-15): the record that closes the window
    averages all five steps, as in the uninterrupted run (it averaged the steps after the resume only)."""
    from hpm.engine.step import PretrainStep
    from hpm.errors import Preempted

    clean = _windows(tmp_path, "clean", ckpt_every_steps=None)
    pretrain(build_config(overrides=clean))
    real, calls = PretrainStep.optimizer_step, {"n": 0}

    def signalled(self: PretrainStep, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, in the middle of the step

    stopped = _windows(tmp_path, "stopped", ckpt_every_steps=None)
    run = Path(stopped["output_dir"])
    with monkeypatch.context() as m:
        m.setattr(PretrainStep, "optimizer_step", signalled)
        with pytest.raises(Preempted):
            pretrain(build_config(overrides=stopped))
    assert load_state(latest_checkpoint(run))["step"] == stop_after
    assert last_step(run) == stop_after // 5 * 5
    pretrain(build_config(overrides=stopped))
    assert records(run) == records(Path(clean["output_dir"]))


# --------------------------------------------------------------------------- non-finite loss
@needs_fmnist
def test_a_non_finite_loss_reaches_train_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inject_nan_at(monkeypatch, step=5)
    overrides = _windows(tmp_path, "nan")
    with pytest.raises(NonFiniteLossError, match="at step 5"):
        pretrain(build_config(overrides=overrides))
    run = Path(overrides["output_dir"])
    log = (run / "train.log").read_text()
    assert "ERROR error: the loss became NaN or infinite at step 5" in log
    assert latest_checkpoint(run).name == "step_00000003"  # the last good one; nothing of step 5 was saved


def inject_nan_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the loss of optimizer step ``step`` (0-based count of steps done) NaN, as a diverging run would."""
    import torch

    from hpm.engine.step import PretrainStep

    real = PretrainStep.forward_backward
    calls = {"n": 0}

    def forward_backward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        out = real(self, *args, **kwargs)
        if calls["n"] == step:
            out = {**out, "loss": out["loss"] * float("nan")}
        calls["n"] += 1
        return out

    monkeypatch.setattr(PretrainStep, "forward_backward", forward_backward)


# --------------------------------------------------------------------------- no hang
@needs_fmnist
def test_an_exception_with_live_workers_ends_the_process_in_seconds(tmp_path: Path) -> None:
    """Not through the CLI: an exception that escapes to the interpreter with DataLoader workers
    alive (they ignore SIGTERM) used to hang multiprocessing's exit handler for ever."""
    overrides = tiny_overrides(tmp_path, data={"num_workers": 2}, train={"epochs": 2})
    script = (
        "import sys, json\n"
        "from hpm.config import build_config\n"
        "from hpm.engine import step\n"
        "from hpm.engine.train import pretrain\n"
        "real = step.PretrainStep.optimizer_step\n"
        "n = [0]\n"
        "def broken(self, *a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 3:\n"
        "        raise RuntimeError('injected failure at step 3')\n"
        "    return real(self, *a, **k)\n"
        "step.PretrainStep.optimizer_step = broken\n"
        f"pretrain(build_config(overrides=json.loads({__import__('json').dumps(__import__('json').dumps(overrides))})))\n"
    )
    started = time.time()
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=90)
    assert done.returncode == 1 and "injected failure at step 3" in done.stderr
    assert time.time() - started < 60
    assert "RuntimeError: injected failure at step 3" in (Path(overrides["output_dir"]) / "train.log").read_text()


def test_a_disk_full_error_of_a_library_is_recognised() -> None:
    from hpm.engine.integrity import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "x"))
