"""An output directory that cannot be written is a user error found before anything is loaded:
exit 2 and one line that says why and what to do; other libraries' warnings go to train.log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpm.engine.outdir import check_output_dir
from hpm.errors import OutputDirError
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpm.cli", *args], env=ENV, capture_output=True, text=True, timeout=120)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A read-only tmpfs mount (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_pretraining_into_a_read_only_mount_exits_2_before_loading_data(read_only_dir: Path, tmp_path: Path) -> None:
    done = _run("pretrain", "--output-dir", str(read_only_dir / "run"), "--data-dir", str(tmp_path / "no-such-data"))
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "cannot write the output directory" in line and "read-only file system" in line
    assert "--output-dir" in line and "no-such-data" not in line  # the data was not looked at


def test_a_fine_tune_into_a_read_only_mount_exits_2(read_only_dir: Path, tmp_path: Path) -> None:
    done = _run("eval", "finetune", str(tmp_path / "no-such-run"), "--out", str(read_only_dir / "ft.json"))
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "cannot write the output directory" in line and "read-only file system" in line and "--out" in line


def test_an_output_directory_under_a_file_exits_2_before_loading_data(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    done = _run("pretrain", "--output-dir", str(tmp_path / "file" / "run"), "--data-dir", str(tmp_path / "none"))
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert f"{tmp_path / 'file'} is not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_a_directory_without_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(OutputDirError, match="no permission to write"):
        check_output_dir(locked / "run")


def test_a_writable_directory_passes_and_nothing_is_written(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


@needs_fmnist
def test_third_party_warnings_go_to_the_run_log_not_the_console(tmp_path: Path) -> None:
    # one optimizer step in all: timm's cosine schedule warns that it has no effect
    overrides = tiny_overrides(tmp_path, data={"subset": 32}, train={"epochs": 1, "warmup_epochs": 0})
    done = _run(*pretrain_args(overrides))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Cosine annealing scheduler" not in done.stderr
    assert "Cosine annealing scheduler" in (tmp_path / "run" / "train.log").read_text()
