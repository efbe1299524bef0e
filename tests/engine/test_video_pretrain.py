"""Pre-training on video clips (Moving Fashion-MNIST written by ``write_moving``): end to end,
exact resume, and the data / model kinds that do not fit."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from hpm.config import build_config
from hpm.data import build_pretrain_data
from hpm.data.folder import NO_LABEL
from hpm.data.video import MovingOptions, is_video_dir, write_moving
from hpm.engine.checkpoint import latest_checkpoint, load_state
from hpm.engine.logger import read_metrics
from hpm.engine.step import PretrainStep
from hpm.engine.train import pretrain
from hpm.errors import ConfigError, Preempted
from hpm.pretrain import run_pretrain
from tests.conftest import needs_fmnist
from tests.data.video.conftest import needs_ffmpeg

pytestmark = [needs_fmnist, needs_ffmpeg]
STEPS_PER_EPOCH = 3  # 24 clips, batch 8


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training clips of 8 frames at 16 px in DIR/train/<motion>/."""
    out = tmp_path_factory.mktemp("moving") / "data"
    write_moving(out, MovingOptions(num_train=24, num_val=0, frames=8, size=16), progress=False)
    return out


def _overrides(root: Path, out: Path, strategy: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny video run: 4 frames of 16 px, tubelets 2 x 4 x 4 (2 x 4 x 4 = 32 tokens), 2 epochs."""
    base: dict[str, Any] = {
        "model": {"preset": "video_small", "num_frames": 4, "tubelet_size": 2, "img_size": 16, "patch_size": 4,
                  "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1,
                  "decoder_num_heads": 2},
        "mask": {"strategy": strategy, "ratio": 0.75},
        "loss": {"predictor": "none" if strategy in ("tube", "random") else "relative"},
        "data": {"data_dir": str(root), "channels": 1, "num_workers": 0, "frame_stride": 2},
        "train": {"epochs": 2, "batch_size": 8, "log_every": 1, "precision": "fp32", "warmup_epochs": 0.5,
                  "blr": 1.5e-3, "seed": 3},
        "eval": {"knn_at_end": False, "figures_at_end": False},
        "output_dir": str(out),
    }
    for section, values in sections.items():
        base[section].update(values)
    return base


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    return load_file(str(ckpt / "model.safetensors"))


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def test_a_video_run_trains_on_clips_end_to_end(clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_config(overrides=_overrides(clips, tmp_path / "run", "hpm_tube",
                                            eval={"knn_at_end": True, "knn_every_epochs": 1, "figures_at_end": True}))
    data = build_pretrain_data(cfg.data, cfg.model.img_size, cfg.train.seed, cfg.model.num_frames)
    clip, label = data.dataset[(0, 123)]
    assert data.name == "video" and data.num_images == 24 and clip.shape == (1, 4, 16, 16)
    assert 0 <= label < 8 and data.classes[label] in ("east", "north", "west", "south", "northeast", "northwest",
                                                       "southwest", "southeast")
    with caplog.at_level("INFO", logger="hpm"):
        summary = run_pretrain(cfg)
    run = Path(cfg.output_dir)
    assert summary.steps == 2 * STEPS_PER_EPOCH
    records = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(records) == summary.steps and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert records[-1]["num_hard"] == int(24 * 0.5) and "teacher_spearman" in records[-1]
    assert not any("knn_top1" in r for r in read_metrics(run / "metrics.jsonl"))
    log = (run / "train.log").read_text() + caplog.text
    assert "video pre-training: the k-NN evaluations read images and are skipped" in log
    assert "data: video, 24 clips, 1 channel(s), 16 px" in log
    assert (run / "figures" / "curves.png").is_file() and not (run / "figures" / "patches.png").exists()
    assert (run / "figures" / "clips.png").is_file() and (run / "figures" / "clips.gif").is_file()
    assert load_state(latest_checkpoint(run))["config"]["model"]["num_frames"] == 4


@pytest.mark.parametrize("strategy", ["tube", "hpm_tube", "random", "hpm"])
def test_a_run_stopped_after_epoch_one_resumes_exactly(
    clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """A stop signal after the first epoch's last step, then a resume: the same final weights
    and losses as an uninterrupted 2-epoch run."""
    clean = _overrides(clips, tmp_path / "clean", strategy)
    pretrain(build_config(overrides=clean))
    real, calls = PretrainStep.optimizer_step, {"n": 0}

    def signalled(self: PretrainStep, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == STEPS_PER_EPOCH:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, at the end of epoch 1

    stopped = _overrides(clips, tmp_path / "stopped", strategy)
    with monkeypatch.context() as m:
        m.setattr(PretrainStep, "optimizer_step", signalled)
        with pytest.raises(Preempted):
            pretrain(build_config(overrides=stopped))
    run = Path(stopped["output_dir"])
    assert load_state(latest_checkpoint(run))["step"] == STEPS_PER_EPOCH
    pretrain(build_config(overrides=stopped))
    want, got = _weights(Path(clean["output_dir"])), _weights(run)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert _losses(run) == _losses(Path(clean["output_dir"]))
    assert len(_losses(run)) == 2 * STEPS_PER_EPOCH


def test_a_flat_folder_of_videos_is_unlabelled_video_data(clips: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    (flat / "sub").mkdir(parents=True)
    for i, file in enumerate(sorted((clips / "train").rglob("*.mkv"))[:6]):
        shutil.copy(file, (flat / "sub" if i % 2 else flat) / f"{i}.mkv")
    assert is_video_dir(flat) and is_video_dir(clips)
    cfg = build_config(overrides=_overrides(flat, tmp_path / "run", "tube", data={"subset": 4}))
    data = build_pretrain_data(cfg.data, cfg.model.img_size, cfg.train.seed, cfg.model.num_frames)
    assert data.num_images == 4 and data.classes == () and bool((data.labels == NO_LABEL).all())
    assert data.dataset[(1, 5)][0].shape == (1, 4, 16, 16)


def test_data_and_model_of_different_kinds_are_refused(clips: Path, tmp_path: Path) -> None:
    video = build_config(overrides=_overrides(clips, tmp_path / "a", "tube"))
    with pytest.raises(ConfigError, match="holds video files: pre-train a video model"):
        build_pretrain_data(video.data, 16, 0, None)
    images = tmp_path / "images" / "train" / "a"
    images.mkdir(parents=True)
    from PIL import Image

    for i in range(8):
        Image.new("L", (16, 16), color=i).save(images / f"{i}.png")
    assert not is_video_dir(tmp_path / "images")
    cfg = build_config(overrides=_overrides(tmp_path / "images", tmp_path / "b", "tube"))
    with pytest.raises(ConfigError, match="model.num_frames=4 makes a video model"):
        pretrain(cfg)
    with pytest.raises(ConfigError, match="mask.strategy=tube masks tubes over time and needs a video model"):
        pretrain(build_config(overrides={**_overrides(tmp_path / "images", tmp_path / "c", "tube"),
                                         "model": {"preset": "small", "img_size": 16}}))


def test_the_bench_times_video_variants_against_videomae(tmp_path: Path) -> None:
    from hpm.bench import format_bench, run_bench

    raw = _overrides(tmp_path, tmp_path / "bench", "tube", train={"batch_size": 2, "device": "cpu"})
    cfg = build_config(overrides={k: raw[k] for k in ("model", "mask", "train")})
    result = run_bench(cfg, ["fp32"], ["videomae", "hpm", "hpm_tube"], steps=1, warmup=1)
    assert result["num_frames"] == 4 and result["videomae"]["fp32"]["step_s"] > 0
    assert "teacher" in result["hpm_tube"]["fp32"]["phases_s"] and "teacher" not in result["videomae"]["fp32"]["phases_s"]
    ratio = result["hpm_tube_over_videomae"]["fp32"]
    assert ratio == result["hpm_tube"]["fp32"]["step_s"] / result["videomae"]["fp32"]["step_s"]
    assert "hpm / videomae step time (fp32)" in format_bench(result) and "x 4 frames" in format_bench(result)
