"""Pre-training from packed shards: the same run as from the folder, exact resume, torchrun."""

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
from hpm.data.pack import PackOptions, pack_folder
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from hpm.engine.logger import read_metrics
from hpm.engine.train import pretrain
from tests.conftest import TORCHRUN, pretrain_args, ranks_env, stderr_tail, tiny_overrides

from .test_shards import make_folder


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def _records(run: Path) -> list[dict]:
    """The logged step records without their timings."""
    return [{k: v for k, v in r.items() if k not in ("img_per_s", "time_s")} for r in read_metrics(run / "metrics.jsonl")]


def _shards(tmp_path: Path, keep_original: bool = False, formats: tuple[str, ...] = ("png", "jpg")) -> tuple[Path, Path]:
    folder = make_folder(tmp_path / "images", per_class=30, size=(40, 30), formats=formats)
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(keep_original=keep_original, samples_per_shard=25), progress=False)
    return folder, out


def _overrides(tmp: Path, data_dir: Path, **train: object) -> dict:
    return tiny_overrides(tmp, data={"data_dir": str(data_dir), "subset": None},
                          model={"img_size": 16, "patch_size": 4}, train={"batch_size": 16, **train})


@pytest.mark.parametrize(("keep_original", "formats"), [(True, ("png", "jpg")), (False, ("png",))],
                         ids=["original_bytes", "png_defaults"])
def test_pack_then_pretrain_from_shards_equals_the_folder(
    tmp_path: Path, keep_original: bool, formats: tuple[str, ...]
) -> None:
    folder, shards = _shards(tmp_path, keep_original=keep_original, formats=formats)
    from_folder = _overrides(tmp_path / "folder", folder)
    from_shards = _overrides(tmp_path / "shards_run", shards)
    pretrain(build_config(overrides=from_folder))
    summary = pretrain(build_config(overrides=from_shards))
    assert summary.steps == 2 * (90 // 16)
    a, b = _records(Path(from_folder["output_dir"])), _records(Path(from_shards["output_dir"]))
    assert b == a and len(a) == summary.steps  # the same images, the same run


def test_pretrain_from_re_encoded_shards_with_workers(tmp_path: Path) -> None:
    _, shards = _shards(tmp_path)
    overrides = _overrides(tmp_path, shards, epochs=1)
    overrides["data"]["num_workers"] = 2  # shard files opened lazily in each worker
    summary = pretrain(build_config(overrides=overrides))
    assert summary.steps == 90 // 16 and summary.skipped_images == 0 and np.isfinite(summary.final_loss)


@pytest.mark.slow
def test_killed_run_from_shards_resumes_with_identical_losses(tmp_path: Path) -> None:
    _, shards = _shards(tmp_path)
    clean = _overrides(tmp_path / "clean", shards, epochs=4, ckpt_every_steps=2)
    pretrain(build_config(overrides=clean))
    reference = _losses(Path(clean["output_dir"]))

    broken = _overrides(tmp_path / "broken", shards, epochs=4, ckpt_every_steps=2)
    run = Path(broken["output_dir"])
    cli = [sys.executable, "-m", "hpm.cli", *pretrain_args(broken)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(run)
        if ckpts and load_state(ckpts[-1])["step"] >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_state(latest_checkpoint(run))["step"]
    assert 0 < killed_at < 20, "the run must be interrupted part-way"
    subprocess.run(cli, env=env, check=True, capture_output=True, timeout=300)
    resumed = _losses(run)
    assert [s for s, _ in resumed] == [s for s, _ in reference]  # no lost or repeated step
    np.testing.assert_allclose([v for _, v in resumed], [v for _, v in reference], rtol=1e-5)


@pytest.mark.slow
def test_two_gloo_processes_from_shards_match_one(tmp_path: Path) -> None:
    _, shards = _shards(tmp_path)
    env = ranks_env()
    single = _overrides(tmp_path / "single", shards)
    single["train"]["batch_size"] = 16
    subprocess.run([sys.executable, "-m", "hpm.cli", *pretrain_args(single)], env=env, check=True,
                   capture_output=True, timeout=300)
    ddp = _overrides(tmp_path / "ddp", shards)
    ddp["train"]["batch_size"] = 8  # per process: 2 x 8 = the same global batch of 16
    run = subprocess.run([*TORCHRUN, *pretrain_args(ddp)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, stderr_tail(run.stderr)
    a = read_metrics(Path(single["output_dir"]) / "metrics.jsonl")
    b = read_metrics(Path(ddp["output_dir"]) / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 2 * (90 // 16)
    for key in ("loss", "loss_rec", "lr"):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-4, err_msg=key)
