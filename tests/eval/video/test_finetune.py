"""``hpm eval finetune`` on a video run: the recipes, the classifier's layer decay and drop path,
few labels, and a SIGKILLed fine-tune resumed to the result of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from timm.optim import create_optimizer_v2

from hpm.cli import main
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from hpm.errors import ConfigError
from hpm.eval.encoder import load_encoder
from hpm.eval.video import build_video_finetune_config
from hpm.eval.video.classifier import VideoClassifier
from hpm.eval.video.task import VideoFinetuning
from tests.eval.video.conftest import NUM_TRAIN

EPOCHS, BATCH = 4, 4
STEPS = EPOCHS * NUM_TRAIN // BATCH
COMPARED = ("top1", "final_loss", "history", "steps")


def test_the_recipes_resolve_and_refuse_what_clips_lack() -> None:
    b16 = build_video_finetune_config("video_b16")
    assert b16.batch_size * b16.accum_steps == 384 and b16.blr * 384 / 256 == pytest.approx(1.5e-3)
    assert (b16.epochs, b16.layer_decay, b16.drop_path, b16.smoothing, b16.mixup) == (40, 0.75, 0.1, 0.1, 0.0)
    small = build_video_finetune_config(overrides=["epochs=3"])
    assert small.epochs == 3 and small.blr * small.batch_size / 256 == pytest.approx(1e-3) and small.hflip == 0.0
    with pytest.raises(ConfigError, match="mixup is not available for clips"):
        build_video_finetune_config(overrides={"mixup": 0.8})
    with pytest.raises(ConfigError, match="unknown video fine-tuning recipe 'reference'"):
        build_video_finetune_config("reference")


def test_the_classifier_decays_lr_by_layer_and_drops_paths_by_depth(video_run: Path) -> None:
    encoder = load_encoder(video_run).model
    model = VideoClassifier(encoder, 8, drop_path=0.1)
    assert model(torch.zeros(2, 1, 8, 16, 16)).shape == (2, 8)
    assert all(p.requires_grad for p in model.parameters())
    assert [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in model.blocks] == [0.0, pytest.approx(0.1)]
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["head.weight"])] == scale[id(named["fc_norm.weight"])] == 1.0
    assert scale[id(named["blocks.1.mlp.fc1.weight"])] == 0.5 and scale[id(named["blocks.0.attn.qkv.weight"])] == 0.25
    assert scale[id(named["patch_embed.proj.weight"])] == scale[id(named["cls_token"])] == 0.125


def test_token_pooling_reads_the_class_token_the_probe_reads(video_run: Path) -> None:
    encoder = load_encoder(video_run).model
    model = VideoClassifier(encoder, 8, global_pool="token").eval()
    assert torch.equal(model.fc_norm.weight, encoder.norm.weight)  # the pre-trained final norm, kept
    model.head = torch.nn.Identity()
    clips = torch.randn(3, 1, 8, 16, 16)  # [N, C, T, H, W]
    with torch.no_grad():
        assert torch.allclose(model(clips), encoder.forward_encoder(clips)[:, 0], atol=1e-5)  # [N, D]
    assert VideoClassifier(encoder, 8).fc_norm.weight.eq(1).all()  # avg: a fresh norm after the mean
    with pytest.raises(ConfigError, match="unknown global_pool 'max'"):
        VideoClassifier(encoder, 8, global_pool="max")  # type: ignore[arg-type]


def _args(run: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "finetune", str(run), "--epochs", str(EPOCHS), "--precision", "fp32", "--out", str(out),
            f"batch_size={BATCH}", "num_workers=0", "eval_every=1", "ckpt_every_steps=2", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # as the reference computes here


def _result(out: Path) -> dict:
    return json.loads(out.read_text())["result"]


def test_few_labels_fine_tune_end_to_end(video_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft.json"
    assert main(["eval", "finetune", str(video_run), "--labels", "16", "--label", "class", "--epochs", "1",
                 "--precision", "fp32", "--out", str(out), "batch_size=4", "num_workers=0"]) == 0
    record = json.loads(out.read_text())
    assert record["protocol"] == "finetune" and record["data"]["labels"]["count"] == 16
    assert record["data"]["label"] == "class" and record["result"]["steps"] == 4
    assert record["result"]["views"]["num_views"] == 2 and 0.0 <= record["result"]["top1"] <= 100.0
    assert load_state(latest_checkpoint(tmp_path / "ft"))["kind"] == "video_finetune"


@pytest.fixture(scope="module")
def reference(video_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The result of an uninterrupted fine-tune."""
    out = tmp_path_factory.mktemp("vref") / "ref.json"
    assert main(_args(video_run, out)) == 0
    return _result(out)


def test_a_fine_tune_stopped_by_sigterm_resumes_to_the_uninterrupted_result(
    video_run: Path, reference: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = VideoFinetuning.train_step

    def signalled(self: VideoFinetuning, *args: Any) -> None:
        real(self, *args)
        if self.step == 5:  # mid-epoch, between two checkpoints
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "ft.json"
    with monkeypatch.context() as m:
        m.setattr(VideoFinetuning, "train_step", signalled)
        assert main(_args(video_run, out)) == 143
    assert load_state(latest_checkpoint(tmp_path / "ft"))["step"] == 5 and not out.exists()
    assert main(_args(video_run, out)) == 0
    for key in COMPARED:
        assert _result(out)[key] == reference[key], key


@pytest.mark.slow
def test_a_killed_fine_tune_resumes_to_the_uninterrupted_result(video_run: Path, reference: dict,
                                                                 tmp_path: Path) -> None:
    out, ft_dir = tmp_path / "eval" / "ft.json", tmp_path / "eval" / "ft"
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *_args(video_run, out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(ft_dir)
        if ckpts and int(ckpts[-1].name.split("_")[1]) >= 4:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_state(latest_checkpoint(ft_dir))["step"]
    assert 4 <= killed_at < STEPS and not out.exists(), "the fine-tune must be killed part-way"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_args(video_run, out)], env=_env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming the video fine-tune from {ft_dir / 'checkpoints'}" in done.stderr
    for key in COMPARED:
        assert _result(out)[key] == reference[key], key
    assert main(_args(video_run, out, "--epochs", "5")) == 2  # another recipe is refused
