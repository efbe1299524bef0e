"""One run per directory: a second run on a directory in use exits 2 at once, naming the holder,
and the first run ends as an undisturbed one; a killed run never leaves its directory locked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpm.engine.lock import LOCK_NAME, RunDirLock
from hpm.engine.logger import read_metrics
from hpm.errors import RunDirInUse
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _records(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time_s", "img_per_s")}
            for r in read_metrics(run / "metrics.jsonl")]


def _wait_for(what: str, ready, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {what} (exit {proc.poll()})")


def _hpm(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpm.cli", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@needs_fmnist
def test_a_second_pretraining_on_a_directory_in_use_exits_2_and_the_first_is_undisturbed(tmp_path: Path) -> None:
    def overrides(name: str) -> dict:  # steps long enough for a second process to start while it runs
        out = tiny_overrides(tmp_path / name, data={"subset": 1024}, train={"epochs": 2, "ckpt_every_steps": 8})
        out["model"].update(embed_dim=128, depth=4, num_heads=4)
        return out

    clean = overrides("clean")
    assert subprocess.run([sys.executable, "-m", "hpm.cli", *pretrain_args(clean)], env=ENV,
                          capture_output=True).returncode == 0
    first = overrides("busy")
    run = Path(first["output_dir"])
    proc = _hpm(pretrain_args(first))
    _wait_for("step 3", lambda: any(r.get("step", 0) >= 3 for r in read_metrics(run / "metrics.jsonl")), proc)
    started = time.time()
    second = subprocess.run([sys.executable, "-m", "hpm.cli", *pretrain_args(first)], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert time.time() - started < 30
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is in use by process {proc.pid} on host {socket.gethostname()}" in lines[0]
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert _records(run) == _records(Path(clean["output_dir"]))
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == sorted(p.name for p in (Path(clean["output_dir"]) / "checkpoints").iterdir())


@needs_fmnist
def test_a_killed_run_leaves_its_directory_free(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, data={"subset": 512, "num_workers": 1}, train={"epochs": 3})
    run = Path(overrides["output_dir"])
    proc = _hpm(pretrain_args(overrides))
    _wait_for("step 2", lambda: any(r.get("step", 0) >= 2 for r in read_metrics(run / "metrics.jsonl")), proc)
    proc.send_signal(signal.SIGKILL)  # its data-loader worker may outlive it for a moment
    proc.wait()
    with RunDirLock(run):
        assert (run / LOCK_NAME).read_text().startswith(f"process {os.getpid()} ")


def test_the_lock_is_held_until_the_holder_exits_and_nested_holders_share_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = f"from hpm.engine.lock import RunDirLock\nimport time\nwith RunDirLock({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse, match=f"in use by process {holder.pid} on host"):
            with RunDirLock(run):
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunDirLock(run), RunDirLock(run):  # the command around the engine: one lock
        assert (run / LOCK_NAME).is_file()
    with RunDirLock(run):
        pass


def test_a_refused_run_in_a_new_directory_leaves_nothing_behind(tmp_path: Path) -> None:
    run = tmp_path / "new" / "run"
    with pytest.raises(ValueError):
        with RunDirLock(run):
            raise ValueError("the data set is missing")
    assert not run.exists()
