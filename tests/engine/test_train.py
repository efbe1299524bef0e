"""End-to-end pre-training on a Fashion-MNIST subset: learning, resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from hpm.config import build_config
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from hpm.engine.logger import read_metrics
from hpm.engine.train import pretrain
from hpm.pretrain import run_pretrain
from hpm.errors import ConfigError, DataError, NonFiniteLossError
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


@needs_fmnist
def test_mae_run_learns_and_writes_run_dir(tmp_path: Path) -> None:
    cfg = build_config(overrides=tiny_overrides(
        tmp_path, mask={"strategy": "random"}, loss={"predictor": "none"},
        data={"subset": 512}, train={"epochs": 3},
        eval={"knn_at_end": True, "knn_every_epochs": 2, "knn_train_subset": 500, "knn_test_subset": 200},
    ))
    summary = run_pretrain(cfg)  # the engine calls the k-NN monitor between epochs, the command at the end
    run = Path(cfg.output_dir)
    records = read_metrics(run / "metrics.jsonl")
    knn = [r for r in records if "knn_top1" in r]
    records = [r for r in records if "loss" in r]
    assert len(records) == summary.steps == 3 * (512 // 32)
    for key in ("epoch", "step", "loss", "lr", "img_per_s"):
        assert key in records[0]
    assert not any("loss_pred" in r for r in records)  # no objective, not a zero one
    assert [r["epoch"] for r in knn] == [1, 2]  # every 2 epochs, and at the end
    assert knn[-1]["step"] == summary.steps
    assert knn[-1]["knn_top1"] == knn[-1]["knn_top1_k20"] > 30  # 10 classes: chance is 10%
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert last < 0.9 * first, (first, last)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["in_chans"] == 1 and saved["mask"]["strategy"] == "random"
    assert any((run / "tensorboard").iterdir())
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and (ckpt / "model.safetensors").is_file()
    assert not (ckpt / "teacher.safetensors").exists()  # MAE has no teacher
    state = load_state(ckpt)
    assert state["step"] == summary.steps and state["config"]["train"]["epochs"] == 3
    assert len(list_checkpoints(run)) == 2  # keep_ckpts


@needs_fmnist
def test_hpm_predictor_learns_to_rank(tmp_path: Path) -> None:
    cfg = build_config(overrides=tiny_overrides(
        tmp_path, data={"subset": 1024}, train={"epochs": 3, "batch_size": 64},
        model={"decoder_depth": 2},
    ))
    pretrain(cfg)
    run = Path(cfg.output_dir)
    records = read_metrics(run / "metrics.jsonl")
    for key in ("loss_rec", "loss_pred", "alpha", "num_hard", "pred_spearman", "pred_top25",
                "teacher_spearman"):
        assert key in records[-1], key
    assert records[-1]["alpha"] == pytest.approx(0.5)
    assert records[0]["alpha"] == pytest.approx(0.5 / 3)
    assert records[-1]["num_hard"] == int(48 * 0.5)
    late = np.mean([r["pred_spearman"] for r in records[-8:]])
    assert late > 0.2, f"predictor ranks no better than chance: {late:.3f}"
    assert (latest_checkpoint(run) / "teacher.safetensors").is_file()


@needs_fmnist
def test_second_run_resumes_instead_of_restarting(tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tmp_path, train={"epochs": 1},
        eval={"knn_at_end": True, "knn_train_subset": 200, "knn_test_subset": 100},
    )
    run_pretrain(build_config(overrides=overrides))
    run = Path(overrides["output_dir"])
    before = (run / "metrics.jsonl").read_text()
    assert "knn_top1" in before
    summary = run_pretrain(build_config(overrides=overrides))
    assert summary.steps == 8
    assert (run / "metrics.jsonl").read_text() == before  # nothing repeated, k-NN included


def _cli(tmp: Path, overrides: dict, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "hpm.cli", *pretrain_args(overrides), *extra]


@needs_fmnist
@pytest.mark.parametrize(("strategy", "teacher_view"), [("hpm", "full"), ("hpm", "masked"), ("attention", "full")])
def test_interrupted_run_resumes_with_identical_losses(tmp_path: Path, strategy: str, teacher_view: str) -> None:
    """Kill a run (SIGKILL) after a mid-epoch checkpoint; the resumed run matches a clean one."""
    common = {"train": {"epochs": 3, "ckpt_every_steps": 3},
              "mask": {"strategy": strategy, "teacher_view": teacher_view}}
    clean = tiny_overrides(tmp_path / "clean", **common)
    pretrain(build_config(overrides=clean))
    reference = _losses(Path(clean["output_dir"]))

    broken = tiny_overrides(tmp_path / "broken", **common)
    run = Path(broken["output_dir"])
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    proc = subprocess.Popen(_cli(tmp_path, broken), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(run)
        if ckpts and load_state(ckpts[-1])["step"] >= 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_state(latest_checkpoint(run))["step"]
    assert 0 < killed_at < 24, "the run must be interrupted part-way"
    subprocess.run(_cli(tmp_path, broken), env=env, check=True, capture_output=True)
    resumed = _losses(run)
    assert [s for s, _ in resumed] == [s for s, _ in reference]  # no lost or repeated step
    np.testing.assert_allclose([v for _, v in resumed], [v for _, v in reference], rtol=1e-5)


@needs_fmnist
def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, train={"epochs": 1})
    pretrain(build_config(overrides=overrides))
    changed = tiny_overrides(tmp_path, train={"epochs": 1, "blr": 1e-3})
    with pytest.raises(ConfigError, match="train.blr"):
        pretrain(build_config(overrides=changed))
    assert latest_checkpoint(Path(overrides["output_dir"])) is not None  # nothing lost


@needs_fmnist
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tmp_path, mask={"strategy": "random"}, loss={"predictor": "none"},
        train={"epochs": 4, "blr": 1e9, "warmup_epochs": 0, "ckpt_every_steps": 1},
    )
    with pytest.raises(NonFiniteLossError, match=r"at step \d+.*last good checkpoint"):
        pretrain(build_config(overrides=overrides))
    run = Path(overrides["output_dir"])
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_missing_fashion_mnist_names_the_package(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, data={"root": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        pretrain(build_config(overrides=overrides))
    assert not Path(overrides["output_dir"]).exists()  # nothing written


def _folder(root: Path, n_per_class: int = 40, corrupt: int = 0) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        d = root / "train" / label
        d.mkdir(parents=True)
        for i in range(n_per_class):
            size = (20 + i % 7, 18 + i % 5)
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    for i in range(corrupt):
        (root / "train" / "a" / f"bad{i}.png").write_bytes(b"not an image" * 10)
    return root


def test_image_folder_with_corrupt_files_is_skipped_and_counted(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", corrupt=3)
    overrides = tiny_overrides(
        tmp_path, data={"data_dir": str(root), "subset": None},
        model={"img_size": 16, "patch_size": 4}, train={"epochs": 2, "batch_size": 16},
    )
    summary = pretrain(build_config(overrides=overrides))
    assert summary.skipped_images == 2 * 3  # each corrupt file, once per epoch
    records = read_metrics(Path(overrides["output_dir"]) / "metrics.jsonl")
    assert records[-1]["skipped_images"] == summary.skipped_images
    saved = yaml.safe_load((Path(overrides["output_dir"]) / "config.yaml").read_text())
    assert saved["model"]["in_chans"] == 3 and saved["data"]["dataset"] == "folder"


def test_the_log_names_the_first_ten_unreadable_images_then_counts(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", corrupt=12)
    overrides = tiny_overrides(
        tmp_path, data={"data_dir": str(root), "subset": None},
        model={"img_size": 16, "patch_size": 4}, train={"epochs": 1, "batch_size": 16},
    )
    summary = pretrain(build_config(overrides=overrides))
    assert summary.skipped_images > 10  # an epoch drops its last partial batch: maybe not all 12
    log = (Path(overrides["output_dir"]) / "train.log").read_text()
    named = [line for line in log.splitlines() if "skipped unreadable image" in line]
    assert len(named) == 10, named
    bad = {str(root / "train" / "a" / f"bad{i}.png") for i in range(12)}
    assert all(line.rsplit(" ", 1)[-1] in bad for line in named)  # full paths, to fix or remove
    assert "only their count is logged" in log and f"{summary.skipped_images} unreadable image(s) were skipped" in log


def test_all_files_unreadable_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "train" / "a").mkdir(parents=True)
    for i in range(5):
        (root / "train" / "a" / f"{i}.jpg").write_bytes(b"\x00garbage")
    overrides = tiny_overrides(tmp_path, data={"data_dir": str(root), "subset": None})
    with pytest.raises(DataError, match="could be read"):
        pretrain(build_config(overrides=overrides))


@needs_fmnist
def test_training_time_is_logged_and_carried_over_a_resume(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, train={"epochs": 1})
    pretrain(build_config(overrides=overrides))
    run = Path(overrides["output_dir"])
    times = [r["time_s"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(times) == 8 and all(b > a > 0 for a, b in zip(times, times[1:]))
    saved = load_state(latest_checkpoint(run))["train_time_s"]
    assert saved >= times[-1]
    longer = tiny_overrides(tmp_path, train={"epochs": 2})
    with pytest.raises(ConfigError):  # epochs differ: another run
        pretrain(build_config(overrides=longer))


@needs_fmnist
def test_resume_accepts_a_run_made_before_a_config_key_existed(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, train={"epochs": 2, "ckpt_every_steps": 3})
    pretrain(build_config(overrides=overrides))
    run = Path(overrides["output_dir"])
    # pretend the run predates data.fit / data.subset_seed and was interrupted (drop its newest checkpoint)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["data"]["fit"], saved["data"]["subset_seed"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    for ckpt in list_checkpoints(run)[1:]:
        import shutil

        shutil.rmtree(ckpt)
    before = load_state(latest_checkpoint(run))["train_time_s"]
    summary = pretrain(build_config(overrides=overrides))  # defaults: resumes
    assert summary.steps == 16
    records = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 17))
    assert records[-1]["time_s"] > before
    # but a new key set to a non-default value is another run
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match="data.fit"):
        pretrain(build_config(overrides=tiny_overrides(tmp_path, train={"epochs": 2, "ckpt_every_steps": 3},
                                                       data={"subset": 256, "num_workers": 0, "fit": "pad"})))
