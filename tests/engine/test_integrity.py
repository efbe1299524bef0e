"""Checkpoint integrity: manifests catch truncated, missing and overwritten files; full disks are recognised."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from hpm.config import build_config
from hpm.engine.checkpoint import save_checkpoint
from hpm.engine.ema import build_teacher
from hpm.engine.integrity import MANIFEST, human_bytes, is_disk_full, seal, sha256_file, verify_checkpoint
from hpm.models import build_model


def _ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(build_config(overrides={"model": {"in_chans": 1, "depth": 1, "decoder_depth": 1}}).model)
    return save_checkpoint(tmp_path, 3, model, build_teacher(model), {"epoch": 0})


def test_a_fresh_checkpoint_verifies_and_its_manifest_lists_every_file(tmp_path: Path) -> None:
    ckpt = _ckpt(tmp_path)
    manifest = json.loads((ckpt / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.safetensors", "teacher.safetensors", "state.pt"}
    for name, entry in manifest["files"].items():
        assert entry["bytes"] == (ckpt / name).stat().st_size
        assert entry["sha256"] == sha256_file(ckpt / name)
    assert verify_checkpoint(ckpt) == []


@pytest.mark.parametrize("name", ["model.safetensors", "teacher.safetensors", "state.pt"])
def test_truncation_is_found_by_size(tmp_path: Path, name: str) -> None:
    ckpt = _ckpt(tmp_path)
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    assert verify_checkpoint(ckpt, hashes=False) == [f"{name} has {len(data) // 2} bytes, {len(data)} were written"]


def test_an_overwrite_of_the_same_size_is_found_by_hash_only(tmp_path: Path) -> None:
    ckpt = _ckpt(tmp_path)
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    assert verify_checkpoint(ckpt, hashes=False) == []
    assert verify_checkpoint(ckpt) == ["model.safetensors does not match its SHA-256 (changed after it was written)"]
    seal(ckpt)  # a deliberate edit recorded as such
    assert verify_checkpoint(ckpt) == []


def test_missing_files_and_a_garbled_manifest(tmp_path: Path) -> None:
    ckpt = _ckpt(tmp_path)
    (ckpt / "teacher.safetensors").unlink()
    assert verify_checkpoint(ckpt) == ["missing teacher.safetensors"]
    (ckpt / MANIFEST).write_text("{not json")
    assert verify_checkpoint(ckpt)[0].startswith(f"unreadable {MANIFEST}")


def test_a_checkpoint_of_before_manifests_is_checked_for_its_files_only(tmp_path: Path) -> None:
    ckpt = _ckpt(tmp_path)
    (ckpt / MANIFEST).unlink()
    assert verify_checkpoint(ckpt) == []
    (ckpt / "state.pt").unlink()
    assert verify_checkpoint(ckpt) == ["missing state.pt"]


def test_full_disks_are_recognised_through_wrapping_errors() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full(RuntimeError("I/O error: No space left on device (os error 28)"))  # safetensors' wording
    assert not is_disk_full(ValueError("bad value"))


def test_human_bytes() -> None:
    assert human_bytes(999) == "999 B"
    assert human_bytes(2_200_000) == "2.2 MB"
    assert human_bytes(5.1e9) == "5.1 GB"
