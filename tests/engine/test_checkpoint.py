"""Checkpoints: atomic writes, rotation, discovery, loading errors and RNG state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.config import build_config
from hpm.engine.checkpoint import (
    CKPT_DIR,
    latest_checkpoint,
    list_checkpoints,
    load_state,
    load_weights,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hpm.engine.ema import build_teacher
from hpm.errors import CheckpointError
from hpm.io import atomic_write_text
from hpm.models import build_model


def _model(seed: int = 0, **model):
    torch.manual_seed(seed)
    cfg = build_config(overrides={"model": {"in_chans": 1, "depth": 1, "decoder_depth": 1, **model}})
    return build_model(cfg.model)


# --------------------------------------------------------------------------- atomic write
def test_atomic_write_text(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "config.yaml"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.yaml"]  # no temp files left


def test_atomic_write_text_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]  (write() fails mid-way)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# --------------------------------------------------------------------------- save / list / rotate
def test_save_keeps_the_newest_and_ignores_leftovers(tmp_path: Path) -> None:
    model = _model()
    teacher = build_teacher(model)
    for step in (5, 10, 15, 20):
        path = save_checkpoint(tmp_path, step, model, teacher, {"epoch": step // 5}, keep=2)
        assert path == tmp_path / CKPT_DIR / f"step_{step:08d}"
        assert {p.name for p in path.iterdir()} == {"model.safetensors", "teacher.safetensors", "state.pt", "manifest.json"}
    found = list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["step_00000015", "step_00000020"]
    assert latest_checkpoint(tmp_path) == tmp_path / CKPT_DIR / "step_00000020"
    # a crashed save leaves a temp folder; an incomplete folder lacks state.pt: both ignored
    tmp = tmp_path / CKPT_DIR / ".step_00000030.abc.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"partial")
    (tmp / "state.pt").write_bytes(b"partial")
    partial = tmp_path / CKPT_DIR / "step_00000040"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"x")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000015", "step_00000020"]
    assert latest_checkpoint(tmp_path).name == "step_00000020"
    assert resolve_checkpoint(tmp_path).name == "step_00000020"
    # the next save still rotates, and leaves the leftovers alone
    save_checkpoint(tmp_path, 25, model, None, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000020", "step_00000025"]
    assert not (tmp_path / CKPT_DIR / "step_00000025" / "teacher.safetensors").exists()


def test_sorting_is_numeric_and_keep_one(tmp_path: Path) -> None:
    model = _model()
    for step in (100, 9, 1000):
        save_checkpoint(tmp_path, step, model, None, {}, keep=5)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000009", "step_00000100", "step_00001000"]
    save_checkpoint(tmp_path, 2000, model, None, {"v": 1}, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00002000"]
    save_checkpoint(tmp_path, 2000, model, None, {"v": 2}, keep=1)  # same step again: replaced
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00002000"]
    assert load_state(tmp_path / CKPT_DIR / "step_00002000")["v"] == 2


def test_empty_run_dir(tmp_path: Path) -> None:
    assert list_checkpoints(tmp_path) == []
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)


def test_round_trip_weights_and_state(tmp_path: Path) -> None:
    model = _model(seed=1)
    teacher = build_teacher(model)
    extra = {"epoch": 3, "rng": rng_state(), "tensor": torch.arange(4)}
    ckpt = save_checkpoint(tmp_path, 7, model, teacher, extra)
    assert resolve_checkpoint(ckpt) == ckpt
    state = load_state(ckpt)
    assert state["step"] == 7 and state["epoch"] == 3 and state["format"] == 1
    torch.testing.assert_close(state["tensor"], torch.arange(4))
    fresh = _model(seed=2)
    assert not torch.equal(fresh.cls_token, model.cls_token)
    load_weights(fresh, ckpt / "model.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    fresh_teacher = build_teacher(_model(seed=3))
    load_weights(fresh_teacher, ckpt / "teacher.safetensors")
    torch.testing.assert_close(fresh_teacher.predictor_pred.weight, teacher.predictor_pred.weight)


# --------------------------------------------------------------------------- errors
def test_load_weights_of_another_architecture(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path, 1, _model(), None, {})
    deeper = _model(depth=2)
    with pytest.raises(CheckpointError, match="another architecture") as info:
        load_weights(deeper, ckpt / "model.safetensors")
    assert "missing keys" in str(info.value) and "blocks.1." in str(info.value)
    wider = _model(embed_dim=96)
    with pytest.raises(CheckpointError, match="shape mismatches") as info:
        load_weights(wider, ckpt / "model.safetensors")
    assert "blocks.0.attn.qkv.weight: file (576, 192) vs model (288, 96)" in str(info.value)
    no_pred = build_model(build_config(overrides={"model": {"in_chans": 1, "depth": 1, "decoder_depth": 1}}).model,
                          loss_predictor=False)
    with pytest.raises(CheckpointError, match="unexpected keys") as info:
        load_weights(no_pred, ckpt / "model.safetensors")
    assert "predictor_" in str(info.value)


def test_load_weights_missing_or_garbage(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(_model(), tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights(_model(), bad)


def test_load_state_of_a_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "state.pt").write_bytes(b"garbage, not a torch file" * 100)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_state(tmp_path)
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "missing")


def test_load_state_of_another_format(tmp_path: Path) -> None:
    torch.save({"format": 99, "step": 1}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_state(tmp_path)


def test_load_state_of_a_non_dict_file(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "state.pt")
    with pytest.raises(CheckpointError):
        load_state(tmp_path)


def test_load_state_refuses_pickled_objects(tmp_path: Path) -> None:
    """weights_only: a state.pt holding arbitrary Python objects is rejected."""

    torch.save({"format": 1, "obj": Path("x")}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_state(tmp_path)


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "no_such_run")


# --------------------------------------------------------------------------- RNG state
def _draws() -> tuple[torch.Tensor, np.ndarray, list[float]]:
    return torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)]


def test_rng_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    _draws()  # move away from the seeded start
    state = rng_state()
    first = _draws()
    _draws()
    set_rng_state(state)
    again = _draws()
    torch.testing.assert_close(again[0], first[0], rtol=0, atol=0)
    np.testing.assert_array_equal(again[1], first[1])
    assert again[2] == first[2]
    # also after a round trip through a checkpoint (weights_only load)
    ckpt = save_checkpoint(tmp_path, 1, _model(), None, {"rng": state})
    _draws()
    set_rng_state(load_state(ckpt)["rng"])
    loaded = _draws()
    torch.testing.assert_close(loaded[0], first[0], rtol=0, atol=0)
    np.testing.assert_array_equal(loaded[1], first[1])
    assert loaded[2] == first[2]


def test_rng_state_round_trip_mid_gaussian_pair() -> None:
    np.random.seed(0)
    random.seed(0)
    np.random.randn(3)  # odd: one Gaussian of the pair is cached
    random.gauss(0, 1)
    state = rng_state()
    first = (np.random.randn(4), [random.gauss(0, 1) for _ in range(3)])
    set_rng_state(state)
    again = (np.random.randn(4), [random.gauss(0, 1) for _ in range(3)])
    np.testing.assert_array_equal(again[0], first[0])
    assert again[1] == first[1]


# --------------------------------------------------------------------------- damaged checkpoints, full disks
def _three_checkpoints(tmp_path: Path) -> list[Path]:
    model = _model()
    return [save_checkpoint(tmp_path, step, model, None, {"epoch": 0, "v": step}, keep=3) for step in (1, 2, 3)]


def _load_v(ckpt: Path) -> int:
    return int(load_state(ckpt)["v"])


def test_load_newest_moves_a_truncated_newest_checkpoint_aside_and_uses_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hpm.engine.checkpoint import DAMAGED_DIR, load_newest

    from hpm.engine.logger import LOG

    first, second, newest = _three_checkpoints(tmp_path)
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[:100])
    LOG.addHandler(caplog.handler)  # the hpm logger does not propagate once a run set it up
    try:
        ckpt, v = load_newest(tmp_path, _load_v)
    finally:
        LOG.removeHandler(caplog.handler)
    assert (ckpt, v) == (second, 2)
    moved = tmp_path / CKPT_DIR / DAMAGED_DIR / newest.name
    assert moved.is_dir() and (moved / "state.pt").read_bytes() == data[:100]  # kept, not deleted
    assert not newest.exists() and list_checkpoints(tmp_path) == [first, second]
    err = caplog.text
    assert f"checkpoint {newest} is damaged (state.pt has 100 bytes" in err and str(moved) in err


def test_load_newest_treats_an_unreadable_file_of_an_old_checkpoint_as_damage(tmp_path: Path) -> None:
    from hpm.engine.checkpoint import load_newest

    first, second, newest = _three_checkpoints(tmp_path)
    (newest / "manifest.json").unlink()  # a checkpoint written before manifests
    (newest / "state.pt").write_bytes(b"garbage")
    assert load_newest(tmp_path, _load_v) == (second, 2)


def test_load_newest_refuses_when_every_checkpoint_is_damaged(tmp_path: Path) -> None:
    from hpm.engine.checkpoint import load_newest

    for ckpt in _three_checkpoints(tmp_path):
        (ckpt / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"no valid checkpoint .* all 3 were damaged and moved to .*damaged"):
        load_newest(tmp_path, _load_v)
    assert list_checkpoints(tmp_path) == [] and len(list((tmp_path / CKPT_DIR / "damaged").iterdir())) == 3
    assert load_newest(tmp_path / "empty", _load_v) is None  # a new run: nothing to resume


def test_load_newest_does_not_move_a_valid_checkpoint_that_load_refuses(tmp_path: Path) -> None:
    from hpm.engine.checkpoint import load_newest

    *_, newest = _three_checkpoints(tmp_path)

    def refuse(ckpt: Path) -> None:
        raise CheckpointError("of another architecture")

    with pytest.raises(CheckpointError, match="another architecture"):
        load_newest(tmp_path, refuse)
    assert latest_checkpoint(tmp_path) == newest


def test_resolve_checkpoint_skips_a_damaged_newest_but_names_a_damaged_folder(tmp_path: Path) -> None:
    *_, second, newest = _three_checkpoints(tmp_path)
    (newest / "model.safetensors").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path) == second
    assert newest.is_dir()  # evaluation leaves the run directory as it is
    with pytest.raises(CheckpointError, match="damaged: model.safetensors has 1 bytes"):
        resolve_checkpoint(newest)


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_stays_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from hpm.engine import checkpoint as C
    from hpm.engine.integrity import verify_checkpoint
    from hpm.errors import DiskFullError

    model = _model()
    good = save_checkpoint(tmp_path, 1, model, None, {"v": 1}, keep=1)
    real_write = C.write_durable_with

    def full_after_half(path: Path, write) -> dict:  # the disk fills up inside the state file
        entry = real_write(path, write)
        with open(path, "r+b") as f:
            f.truncate(entry["bytes"] // 2)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(C, "write_durable_with", full_after_half)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(tmp_path, 2, model, None, {"v": 2}, keep=1)
    message = str(info.value)
    assert "the disk is full" in message and "writing checkpoint step 2" in message
    assert f"The last good checkpoint is {good} (intact)" in message and "needs about" in message
    assert list_checkpoints(tmp_path) == [good] and verify_checkpoint(good) == []
    assert [p.name for p in (tmp_path / CKPT_DIR).iterdir()] == [good.name]  # the partial folder is gone


def test_kept_steps_are_never_pruned(tmp_path: Path) -> None:
    """train.keep_epochs: the checkpoints of those steps stay beside the newest ``keep``."""
    model = _model()
    for step in (5, 10, 15, 20, 25):
        save_checkpoint(tmp_path, step, model, None, {}, keep=1, kept_steps={5, 15})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005", "step_00000015", "step_00000025"]
