"""The fault-injection suite (slow): each fault ends the run with a clear error or a checkpoint,
nothing written before is lost, and the re-run ends equal to an uninterrupted run.

Pre-training: SIGKILL at 5 random steps in a row; SIGTERM at a random step (1 process, and 2
gloo processes with the signal to one rank); a full disk during a checkpoint (a real tmpfs where
it can be mounted, and a write that fails with ENOSPC); a DataLoader worker killed mid-epoch; a
NaN loss at a chosen step. Fine-tuning: a truncated newest checkpoint, a full disk, a NaN loss
(SIGKILL and SIGTERM of a fine-tune: tests/eval/test_finetune_cli_resume.py). The truncated
newest pre-training checkpoint and a stop inside a logging window: tests/engine/test_failures.py.

With ``HPM_FAULT_REPORT=FILE`` the figures of each case (exit status, seconds to exit, steps
lost) are written to FILE as JSON: the table of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from tests.conftest import TORCHRUN, needs_fmnist, override_args, ranks_env, stderr_tail, tiny_overrides, torchrun_worker
from tests.engine.test_failures import ENV, _du, _mount_tmpfs, cli, last_step, records, run_cli, wait_for
from tests.eval.conftest import save_random_run, tiny_config

pytestmark = [pytest.mark.slow, needs_fmnist]
REPORT: dict[str, dict[str, Any]] = {}
RUNNER = [sys.executable, "-m", "tests.fault_runner"]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    path = os.environ.get("HPM_FAULT_REPORT")
    if path and REPORT:
        old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
        Path(path).write_text(json.dumps({**old, **REPORT}, indent=1, sort_keys=True) + "\n")


def _note(case: str, **figures: Any) -> None:
    REPORT[case] = figures


def _cfg(tmp: Path, name: str, **train: Any) -> dict[str, Any]:
    """24 optimizer steps (3 epochs of 8), a checkpoint every 4 steps, a record every 3 (windows
    straddle checkpoints), one DataLoader worker process."""
    return tiny_overrides(
        tmp / name, data={"num_workers": 1}, train={"epochs": 3, "log_every": 3, "ckpt_every_steps": 4, **train}
    )


def _step_of(run: Path) -> int:
    ckpt = latest_checkpoint(run)
    return int(load_state(ckpt)["step"]) if ckpt else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The records of an uninterrupted pre-training (subprocess, 1 thread, as every case)."""
    overrides = _cfg(tmp_path_factory.mktemp("reference"), "run")
    done = run_cli(overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    return records(Path(overrides["output_dir"]))


# --------------------------------------------------------------------------- pre-training
def test_sigkill_at_five_random_steps_in_a_row(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "killed", log_every=1)
    run = Path(overrides["output_dir"])
    rng = random.Random(int(time.time()))
    targets = sorted(rng.sample(range(2, 23), 5))
    lost = []
    for target in targets:
        proc = subprocess.Popen(cli(overrides), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: last_step(run) >= target, proc, what=f"step {target}")
        reached = last_step(run)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lost.append(reached - _step_of(run))
    done = run_cli(overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    clean = _cfg(tmp_path, "ref1", log_every=1)
    assert run_cli(clean).returncode == 0
    assert records(run) == records(Path(clean["output_dir"])), f"kill steps {targets}"
    _note("sigkill x5", kill_steps=targets, steps_lost=lost, exit_status=-9, survived=True)


def test_sigterm_at_a_random_step(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "stopped")
    run = Path(overrides["output_dir"])
    target = random.Random(int(time.time())).randrange(4, 20)
    proc = subprocess.Popen(cli(overrides), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last_step(run) >= target, proc, what=f"step {target}")
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    seconds = time.time() - sent
    stopped_at = _step_of(run)
    assert run_cli(overrides).returncode == 0
    assert records(run) == reference
    _note("sigterm", step=stopped_at, steps_lost=0, exit_status=143, seconds_to_exit=round(seconds, 2), survived=True)


def test_sigterm_to_one_of_two_gloo_processes(tmp_path: Path) -> None:
    def two(name: str) -> dict[str, Any]:
        out = _cfg(tmp_path, name)
        out["train"]["batch_size"] = 16  # 2 x 16: the global batch of one process
        out["data"]["num_workers"] = 0
        return out

    def launch(overrides: dict[str, Any]) -> list[str]:
        return [*TORCHRUN, "pretrain", "--output-dir", overrides["output_dir"], *override_args(overrides)]

    env = ranks_env()

    clean = two("clean")
    done = subprocess.run(launch(clean), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, stderr_tail(done.stderr)
    stopped = two("stopped")
    run = Path(stopped["output_dir"])
    proc = subprocess.Popen(launch(stopped), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    target = random.Random(int(time.time())).randrange(4, 20)
    wait_for(lambda: last_step(run) >= target, proc, timeout=300, what=f"step {target}")
    os.kill(torchrun_worker(proc.pid, 1), signal.SIGTERM)  # rank 1 only
    sent = time.time()
    _, err = proc.communicate(timeout=120)
    seconds = time.time() - sent
    assert proc.returncode != 0 and "143" in err, stderr_tail(err)
    stopped_at = _step_of(run)
    resumed = subprocess.run(launch(stopped), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, stderr_tail(resumed.stderr)
    assert records(run) == records(Path(clean["output_dir"]))  # 2 processes stopped + resumed = 2 uninterrupted
    _note("sigterm, 1 of 2 gloo ranks", step=stopped_at, steps_lost=0, exit_status=143,
          seconds_to_exit=round(seconds, 2), survived=True)


def test_a_full_tmpfs_during_a_checkpoint_then_more_space(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    sizing = _cfg(tmp_path, "sizing", epochs=1, ckpt_every_steps=None)
    assert run_cli(sizing).returncode == 0
    sized = Path(sizing["output_dir"])
    disk = tmp_path / "disk"
    ckpt_bytes = _du(latest_checkpoint(sized))
    if not _mount_tmpfs(disk, _du(sized) + ckpt_bytes // 2):
        pytest.skip("cannot mount a tmpfs here; test_enospc_during_a_checkpoint covers the write failure")
    try:
        overrides = _cfg(disk, "run", ckpt_every_steps=None)  # a checkpoint per epoch: the second fails
        run = Path(overrides["output_dir"])
        started = time.time()
        failed = run_cli(overrides)
        assert failed.returncode == 2 and "the disk is full" in failed.stderr and "Traceback" not in failed.stderr
        lost = last_step(run) - _step_of(run)
        seconds = time.time() - started
        done = subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], capture_output=True)
        assert done.returncode == 0, done.stderr
        assert run_cli(overrides).returncode == 0
        assert records(run) == records(Path(_reference_of(tmp_path, ckpt_every_steps=None)))
        _note("full disk (tmpfs) at a checkpoint", step=_step_of(run), steps_lost=lost, exit_status=2,
              seconds_whole_run=round(seconds, 1), survived=True)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _reference_of(tmp: Path, **train: Any) -> str:
    overrides = _cfg(tmp, f"reference_{abs(hash(json.dumps(train, sort_keys=True)))}", **train)
    if not (Path(overrides["output_dir"]) / "metrics.jsonl").is_file():
        assert run_cli(overrides).returncode == 0
    return overrides["output_dir"]


def test_enospc_during_a_checkpoint(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "run")
    run = Path(overrides["output_dir"])
    failed = subprocess.run([*RUNNER, "--enospc-at-checkpoint", "3", "--", *cli(overrides)[3:]], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2, failed.stderr[-3000:]
    line = [x for x in failed.stderr.splitlines() if x.startswith("hpm pretrain:")]
    assert len(line) == 1 and "the disk is full" in line[0] and "step_00000008 (intact)" in line[0]
    assert [c.name for c in list_checkpoints(run)] == ["step_00000004", "step_00000008"]
    lost = last_step(run) - 8
    assert run_cli(overrides).returncode == 0
    assert records(run) == reference
    _note("ENOSPC at a checkpoint (write wrapper)", step=12, steps_lost=lost, exit_status=2, survived=True)


def test_a_truncated_newest_checkpoint(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "run")
    run = Path(overrides["output_dir"])
    proc = subprocess.Popen(cli(overrides), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = random.Random(int(time.time())).randrange(10, 20)
    wait_for(lambda: last_step(run) >= target, proc, what=f"step {target}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = last_step(run)
    previous, newest = list_checkpoints(run)[-2:]
    resumed_from = int(load_state(previous)["step"])
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[: len(data) // 3])
    done = run_cli(overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"checkpoint {newest} is damaged" in done.stderr and f"resuming from {previous}" in done.stderr
    assert records(run) == reference
    _note("pre-training: newest checkpoint truncated", step=reached,
          steps_lost=reached - resumed_from, exit_status=0, survived=True)


def test_a_data_loader_worker_killed_mid_epoch(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "run")
    run = Path(overrides["output_dir"])
    started = time.time()
    failed = subprocess.run([*RUNNER, "--kill-worker-at-step", "10", "--", *cli(overrides)[3:]], env=ENV,
                            capture_output=True, text=True, timeout=300)
    seconds = time.time() - started
    assert failed.returncode == 1, failed.stderr[-3000:]
    # the worker's death is raised by DataLoader's SIGCHLD handler wherever the main process is,
    # at times inside the progress bar's write: the line may follow the bar on its line
    line = [x[x.index("hpm pretrain:"):] for x in failed.stderr.splitlines() if "hpm pretrain:" in x]
    assert len(line) == 1 and "DataLoader worker" in line[0] and "traceback in" in line[0], failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    assert "Traceback (most recent call last)" in (run / "train.log").read_text()
    lost = 10 - _step_of(run)
    assert run_cli(overrides).returncode == 0
    assert records(run) == reference
    _note("DataLoader worker SIGKILLed mid-epoch", step=10, steps_lost=lost, exit_status=1,
          seconds_whole_run=round(seconds, 1), survived=True)


def test_a_nan_loss_at_a_chosen_step(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    overrides = _cfg(tmp_path, "run")
    run = Path(overrides["output_dir"])
    failed = subprocess.run([*RUNNER, "--nan-at-step", "13", "--", *cli(overrides)[3:]], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "the loss became NaN or infinite at step 13" in failed.stderr and "Traceback" not in failed.stderr
    assert "ERROR error: the loss became NaN or infinite at step 13" in (run / "train.log").read_text()
    assert _step_of(run) == 12  # no checkpoint of a NaN step
    lost = 15 - 12  # the error is raised at the record of step 15
    assert run_cli(overrides).returncode == 0  # the cause gone (here: the injection), the re-run resumes
    assert records(run) == reference
    _note("NaN loss at step 13", step=13, steps_lost=lost, exit_status=2, survived=True)


# --------------------------------------------------------------------------- fine-tuning
FT_COMPARED = ("top1", "final_loss", "history", "steps")


def _ft_args(run: Path, out: Path) -> list[str]:
    return [
        "eval", "finetune", str(run), "--subset", "640", "--test-subset", "100", "--epochs", "2", "--precision",
        "fp32", "--out", str(out), "batch_size=16", "num_workers=0", "eval_every=1", "ckpt_every_steps=5",
    ]  # 2 epochs of 40 steps; bit-identical resumes need num_workers=0 (the fine-tune's own rule)


@pytest.fixture(scope="module")
def ft_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ftref")
    encoder = save_random_run(tmp / "encoder", tiny_config())
    out = tmp / "ft.json"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_ft_args(encoder, out)], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return encoder, json.loads(out.read_text())["result"]


def _same_result(out: Path, reference: dict[str, Any]) -> None:
    result = json.loads(out.read_text())["result"]
    for key in FT_COMPARED:
        assert result[key] == reference[key], key


def test_fine_tune_with_a_truncated_newest_checkpoint(tmp_path: Path, ft_reference: tuple[Path, dict[str, Any]]) -> None:
    encoder, reference = ft_reference
    out = tmp_path / "ft.json"
    args = [sys.executable, "-m", "hpm.cli", *_ft_args(encoder, out)]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(int(c.name[5:]) >= 25 for c in list_checkpoints(tmp_path / "ft")), proc, what="step 25")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    previous, newest = list_checkpoints(tmp_path / "ft")[-2:]
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[:-1000])
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"checkpoint {newest} is damaged" in done.stderr and f"from {previous}" in done.stderr
    assert "is damaged" in (tmp_path / "ft" / "train.log").read_text()
    _same_result(out, reference)
    _note("fine-tune: newest checkpoint truncated", step=int(newest.name[5:]),
          steps_lost=int(newest.name[5:]) - int(previous.name[5:]), exit_status=0, survived=True)


def test_fine_tune_enospc_during_a_checkpoint(tmp_path: Path, ft_reference: tuple[Path, dict[str, Any]]) -> None:
    encoder, reference = ft_reference
    out = tmp_path / "ft.json"
    failed = subprocess.run([*RUNNER, "--enospc-at-checkpoint", "4", "--", *_ft_args(encoder, out)], env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert failed.returncode == 2, failed.stderr[-3000:]
    line = [x for x in failed.stderr.splitlines() if x.startswith("hpm eval:")]
    assert len(line) == 1 and "the disk is full" in line[0] and "step_00000015 (intact)" in line[0], failed.stderr
    assert "ERROR error: the disk is full" in (tmp_path / "ft" / "train.log").read_text()
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_ft_args(encoder, out)], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_result(out, reference)
    _note("fine-tune: ENOSPC at a checkpoint", step=20, steps_lost=5, exit_status=2, survived=True)


def test_fine_tune_nan_loss(tmp_path: Path, ft_reference: tuple[Path, dict[str, Any]]) -> None:
    encoder, reference = ft_reference
    out = tmp_path / "ft.json"
    failed = subprocess.run([*RUNNER, "--nan-at-step", "12", "--", *_ft_args(encoder, out)], env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "NaN or infinite at step 12" in failed.stderr and "Traceback" not in failed.stderr
    assert "ERROR error: the fine-tuning loss became NaN" in (tmp_path / "ft" / "train.log").read_text()
    assert latest_checkpoint(tmp_path / "ft").name == "step_00000010"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_ft_args(encoder, out)], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_result(out, reference)
    _note("fine-tune: NaN loss at step 12", step=12, steps_lost=2, exit_status=2, survived=True)
