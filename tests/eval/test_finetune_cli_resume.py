"""``hpm eval finetune`` killed (SIGKILL) or preempted (SIGTERM, exit 143) part-way: re-running the
same command resumes it and ends with the result JSON of an uninterrupted run; another recipe is
refused and a finished fine-tune is only reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpm.cli import main
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from tests.conftest import TORCHRUN, assert_no_gloo_threads, needs_fmnist, ranks_env, stderr_tail, torchrun_probed, torchrun_worker
from tests.eval.conftest import save_random_run, tiny_config, write_image_folder

STEPS = 2 * (1200 // 16)  # 2 epochs of 75 steps
COMPARED = ("top1", "final_loss", "history", "steps")


def _args(run: Path, out: Path) -> list[str]:
    return [
        "eval", "finetune", str(run), "--subset", "1200", "--test-subset", "100", "--epochs", "2",
        "--precision", "fp32", "--out", str(out), "batch_size=16", "num_workers=0", "eval_every=1",
        "ckpt_every_steps=5", "mixup=0.8", "cutmix=1.0", "reprob=0.25",
    ]


def _env() -> dict[str, str]:
    # the subprocess computes with the thread count of this process (the reference runs here)
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def _start(run: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpm.cli", *_args(run, out)], env=_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )


def _wait_for_checkpoint(ft_dir: Path, proc: subprocess.Popen, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(ft_dir)
        if ckpts and int(ckpts[-1].name.split("_")[1]) >= step:
            return
        time.sleep(0.01)
    raise AssertionError(f"the fine-tune never wrote a checkpoint of step {step} (exit {proc.poll()})")


def _result(out: Path) -> dict:
    return json.loads(out.read_text())["result"]


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_run(tmp_path_factory.mktemp("ftcli") / "run", tiny_config())


@pytest.fixture(scope="module")
def reference(encoder_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The result of an uninterrupted fine-tune."""
    out = tmp_path_factory.mktemp("ref") / "finetune.json"
    assert main(_args(encoder_run, out)) == 0
    return _result(out)


@needs_fmnist
def test_killed_fine_tune_resumes_with_the_uninterrupted_result(encoder_run: Path, reference: dict, tmp_path: Path) -> None:
    out = tmp_path / "eval" / "ft.json"
    ft_dir = tmp_path / "eval" / "ft"  # the result file's path without .json
    proc = _start(encoder_run, out)
    _wait_for_checkpoint(ft_dir, proc, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_state(latest_checkpoint(ft_dir))["step"]
    assert 10 <= killed_at < STEPS and not out.exists(), "the fine-tune must be interrupted part-way"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_args(encoder_run, out)], env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming the fine-tune from {ft_dir / 'checkpoints'}" in done.stderr
    resumed = _result(out)
    for key in COMPARED:
        assert resumed[key] == reference[key], key
    assert (ft_dir / "classifier.safetensors").is_file() and len(list_checkpoints(ft_dir)) == 2


@needs_fmnist
def test_sigterm_checkpoints_the_finished_step_and_exits_143(encoder_run: Path, reference: dict, tmp_path: Path) -> None:
    out = tmp_path / "finetune.json"
    ft_dir = tmp_path / "finetune"
    proc = _start(encoder_run, out)
    _wait_for_checkpoint(ft_dir, proc, 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    ckpt = latest_checkpoint(ft_dir)
    step = load_state(ckpt)["step"]
    assert 5 <= step < STEPS and ckpt.name == f"step_{step:08d}"
    assert f"stopped by signal 15 after step {step} of {STEPS}; checkpoint {ckpt}" in err
    assert not out.exists()
    assert main(_args(encoder_run, out)) == 0
    resumed = _result(out)
    for key in COMPARED:
        assert resumed[key] == reference[key], key


@needs_fmnist
def test_a_second_fine_tune_on_a_directory_in_use_exits_2_and_the_first_is_undisturbed(
    encoder_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "finetune.json"
    args = [*_args(encoder_run, out), "--epochs", "6"]  # long enough for a second process to start meanwhile
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(tmp_path / "finetune", proc, 5)
    started = time.time()
    second = subprocess.run([sys.executable, "-m", "hpm.cli", *args], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2 and time.time() - started < 30, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is in use by process {proc.pid} on host" in lines[0], second.stderr[-2000:]
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    result = _result(out)
    assert result["steps"] == 3 * STEPS and [h["epoch"] for h in result["history"]] == [1, 2, 3, 4, 5, 6]
    log = (tmp_path / "finetune" / "train.log").read_text()
    assert log.count("fine-tune: ") == 1 and "in use" not in log  # the second run wrote nothing there


@needs_fmnist
def test_ctrl_c_checkpoints_the_finished_step_and_exits_130(encoder_run: Path, reference: dict, tmp_path: Path) -> None:
    out = tmp_path / "finetune.json"
    ft_dir = tmp_path / "finetune"
    proc = _start(encoder_run, out)
    _wait_for_checkpoint(ft_dir, proc, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = load_state(latest_checkpoint(ft_dir))["step"]
    assert f"stopped by signal 2 after step {step} of {STEPS}" in err and f"resume from step {step}." in err
    assert main(_args(encoder_run, out)) == 0
    for key in COMPARED:
        assert _result(out)[key] == reference[key], key


def _folder_args(run: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "finetune", str(run), "--data-dir", str(root), "--subset", "all", "--test-subset", "all",
        "--precision", "fp32", "--out", str(out), "batch_size=8", "num_workers=0", *extra,
    ]


def test_cli_refuses_another_recipe_and_reports_a_finished_fine_tune(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    root = write_image_folder(tmp_path / "sq", {"a": 12, "b": 12})
    write_image_folder(root, {"a": 4, "b": 4}, split="val")
    out = tmp_path / "ft.json"
    assert main(_folder_args(run, root, out, "--epochs", "1")) == 0
    first = capsys.readouterr().out
    created = json.loads(out.read_text())["result"]
    assert main(_folder_args(run, root, out, "--epochs", "1")) == 0  # finished: reported, not trained
    assert capsys.readouterr().out.split("|")[0] == first.split("|")[0]
    assert json.loads(out.read_text())["result"] == created  # train_s included: the stored result

    assert main(_folder_args(run, root, out, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ft'} holds a finished fine-tune with another recipe or source" in err
    assert "recipe.epochs: 1 -> 2" in err and "another --out" in err

    other = save_random_run(tmp_path / "other", tiny_config(), seed=1)
    assert main(_folder_args(other, root, out, "--epochs", "1")) == 2
    assert "source.encoder.checkpoint" in capsys.readouterr().err


@pytest.mark.slow
@needs_fmnist
def test_two_processes_stopped_by_a_signal_to_one_resume_bit_identically(encoder_run: Path, tmp_path: Path) -> None:
    """Each rank's RNG states and loss sums are checkpointed: a 2-process (gloo) fine-tune stopped
    by SIGTERM to rank 1 and resumed ends like an uninterrupted 2-process fine-tune."""
    env, launch = ranks_env(), TORCHRUN
    reference = tmp_path / "ref.json"
    subprocess.run([*launch, *_args(encoder_run, reference)], env=env, check=True, capture_output=True, timeout=600)
    out = tmp_path / "ft.json"
    proc = subprocess.Popen([*launch, *_args(encoder_run, out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(tmp_path / "ft", proc, 5)
    os.kill(torchrun_worker(proc.pid, 1), signal.SIGTERM)  # only rank 1 hears it: both stop at the same step
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "exitcode: 143" in err, stderr_tail(err)
    stopped_at = load_state(latest_checkpoint(tmp_path / "ft"))["step"]
    assert 5 <= stopped_at < STEPS // 2  # 2 x 16 images per step: half the steps
    resumed = subprocess.run([*torchrun_probed(tmp_path), *_args(encoder_run, out)], env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, stderr_tail(resumed.stderr)
    assert_no_gloo_threads(tmp_path)  # the fine-tune's process group ended with it
    for key in COMPARED:
        assert _result(out)[key] == _result(reference)[key], key
