"""Self-describing checkpoints, written atomically and verified before a resume.

A checkpoint is a folder ``checkpoints/step_00001234/`` holding
``model.safetensors`` (the student), ``teacher.safetensors`` (the EMA teacher, HPM only),
``state.pt`` (optimizer, grad scaler, mask generator, schedule position, RNG states, the partial
logging window and the resolved config; loaded with ``weights_only=True``) and
``manifest.json`` (size and SHA-256 of each file, :mod:`hpm.engine.integrity`). The folder is
written under a temporary name, fsynced and renamed into place, so a crash never leaves a
half-written checkpoint; a full disk is a :class:`~hpm.errors.DiskFullError` that names the last
good checkpoint. :func:`load_newest` resumes from the newest checkpoint that verifies: a damaged
one is moved aside to ``checkpoints/damaged/`` (never deleted) with a warning.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.integrity import (
    MANIFEST,
    entry_of,
    fsync_dir,
    human_bytes,
    is_disk_full,
    manifest_bytes,
    verify_checkpoint,
    write_durable,
    write_durable_with,
)
from hpm.engine.logger import LOG
from hpm.errors import CheckpointDamaged, CheckpointError, DiskFullError

CKPT_DIR = "checkpoints"
DAMAGED_DIR = "damaged"  # inside CKPT_DIR: checkpoints that failed verification, moved aside
T = TypeVar("T")
_PATTERN = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy, torch (CPU and CUDA)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": list(py_state[1]),
        "python_gauss": py_state[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate((3, tuple(state["python"]), state.get("python_gauss")))
    has_gauss, gauss = state.get("numpy_gauss", (0, 0.0))
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    teacher: nn.Module | None,
    state: dict[str, Any],
    keep: int = 2,
    kept_steps: Collection[int] = (),
) -> Path:
    """Write ``run_dir/checkpoints/step_<step>/`` atomically and keep only the newest ``keep``
    (and, besides them, those of ``kept_steps``, which are never pruned).

    Raises:
        DiskFullError: The file system is full; the partial folder is removed and every earlier
            checkpoint is intact (the message names the newest).
    """
    root = run_dir / CKPT_DIR
    final = root / f"step_{step:08d}"
    weights = {"model.safetensors": model} | ({"teacher.safetensors": teacher} if teacher is not None else {})
    entries: dict[str, dict[str, Any]] = {}
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".step_{step:08d}.", suffix=".tmp"))
        for name, module in weights.items():
            data = safetensors_bytes(_contiguous_state(module))
            entries[name] = entry_of(data)
            write_durable(tmp / name, data)
            del data
        full_state = {**state, "format": FORMAT_VERSION, "step": step}
        entries["state.pt"] = write_durable_with(tmp / "state.pt", lambda f: torch.save(full_state, f))
        write_durable(tmp / MANIFEST, manifest_bytes(entries))  # last: its presence means complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and is_disk_full(exc):
            size = _tensor_bytes(model, teacher, state)  # the whole checkpoint, not the part written
            raise DiskFullError(_disk_full_message(run_dir, step, size, keep)) from exc
        raise
    prunable = [p for p in list_checkpoints(run_dir) if int(_PATTERN.match(p.name).group(1)) not in kept_steps]  # type: ignore[union-attr]
    for old in prunable[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _tensor_bytes(model: nn.Module, teacher: nn.Module | None, state: Any) -> int:
    """About the bytes of a checkpoint: its tensors (weights, optimizer moments, RNG states)."""
    def walk(obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    modules = [model] + ([teacher] if teacher is not None else [])
    return sum(walk(m.state_dict()) for m in modules) + walk(state)


def _disk_full_message(run_dir: Path, step: int, size: int, keep: int) -> str:
    root = run_dir / CKPT_DIR
    try:
        free = human_bytes(shutil.disk_usage(root if root.exists() else run_dir).free)
    except OSError:
        free = "unknown"
    last = latest_checkpoint(run_dir)
    return (
        f"the disk is full: no space left on device writing checkpoint step {step} to {root} ({free} free). "
        f"A checkpoint of this run needs about {human_bytes(size)}, and up to train.keep_ckpts + 1 = {keep + 1} "
        f"of them exist while the newest is written. "
        + (f"The last good checkpoint is {last} (intact). " if last else "No checkpoint was written yet. ")
        + "Free some space (or lower train.keep_ckpts), then re-run the same command to resume."
    )


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _PATTERN.match(p.name)]
    found = [p for p in found if (p / "state.pt").is_file() and (p / "model.safetensors").is_file()]
    return sorted(found, key=lambda p: int(_PATTERN.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None (not verified: see :func:`load_newest`)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def move_aside(ckpt: Path, why: str) -> Path:
    """Move a damaged checkpoint to ``checkpoints/damaged/`` (kept for inspection) and warn."""
    target_dir = ckpt.parent / DAMAGED_DIR
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / ckpt.name, 1
    while target.exists():
        target, n = target_dir / f"{ckpt.name}.{n}", n + 1
    os.replace(ckpt, target)
    LOG.warning("checkpoint %s is damaged (%s); moved it to %s and trying the one before", ckpt, why, target)
    return target


def load_newest(run_dir: Path, load: Callable[[Path], T]) -> tuple[Path, T] | None:
    """Resume point of a run: ``load`` applied to its newest checkpoint that verifies.

    Each checkpoint is verified against its manifest (sizes, SHA-256) before ``load`` reads it;
    a damaged one (or one ``load`` finds unreadable: :class:`~hpm.errors.CheckpointDamaged`)
    is moved aside with a warning and the one before is tried.

    Returns:
        (checkpoint, what ``load`` returned), or None when the run has no checkpoint.

    Raises:
        CheckpointError: Checkpoints existed but none is valid (all moved aside), or ``load``
            refused one for another reason (e.g. another architecture).
    """
    moved: list[Path] = []
    for ckpt in reversed(list_checkpoints(run_dir)):
        problems = verify_checkpoint(ckpt)
        if not problems:
            try:
                return ckpt, load(ckpt)
            except CheckpointDamaged as exc:
                problems = [str(exc)]
        moved.append(move_aside(ckpt, "; ".join(problems)))
    if moved:
        raise CheckpointError(
            f"no valid checkpoint in {Path(run_dir) / CKPT_DIR}: all {len(moved)} were damaged and moved to "
            f"{moved[0].parent}. Start again with another --output-dir (or delete {Path(run_dir) / CKPT_DIR})."
        )
    return None


def load_newest_on_every_rank(run_dir: Path, load: Callable[[Path], T], is_main: bool) -> tuple[Path, T] | None:
    """:func:`load_newest` in every process of a job: rank 0 first (it moves a damaged newest
    checkpoint aside), the others after a barrier, so that all resume from the same one."""
    found = load_newest(run_dir, load) if is_main else None
    D.barrier()
    return found if is_main else load_newest(run_dir, load)


def resolve_checkpoint(path: str | Path) -> Path:
    """A verified checkpoint folder from a checkpoint folder or a run directory (its newest valid
    checkpoint; damaged newer ones are skipped with a warning and left in place)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run directory or a checkpoint folder")
    if (p / "state.pt").is_file() and (p / "model.safetensors").is_file():
        problems = verify_checkpoint(p)
        if problems:
            raise CheckpointDamaged(f"checkpoint {p} is damaged: {'; '.join(problems)}")
        return p
    found = list_checkpoints(p)
    for ckpt in reversed(found):
        problems = verify_checkpoint(ckpt)
        if not problems:
            return ckpt
        LOG.warning("checkpoint %s is damaged (%s); using the one before", ckpt, "; ".join(problems))
    if found:
        raise CheckpointDamaged(f"every checkpoint in {p / CKPT_DIR} is damaged (see the warnings above)")
    raise CheckpointError(
        f"{p} holds no checkpoint (expected {p}/{CKPT_DIR}/step_*/ or a folder with "
        "model.safetensors and state.pt)"
    )


def load_state(ckpt: Path) -> dict[str, Any]:
    """Read ``state.pt`` (weights_only=True)."""
    try:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointDamaged(f"cannot read {ckpt / 'state.pt'}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{ckpt / 'state.pt'} is not an hpm checkpoint of format {FORMAT_VERSION} (found format {found})"
        )
    return state


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing or unreadable file is a CheckpointError."""
    if not file.is_file():
        raise CheckpointDamaged(f"missing weights file {file}")
    try:
        return load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointDamaged(f"cannot read {file}: {exc}") from exc


def describe_mismatch(
    own: dict[str, torch.Tensor],
    theirs: dict[str, torch.Tensor],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    keys: str = "keys",
    versus: str = "model",
) -> list[str]:
    """Missing / unexpected keys and shape mismatches between two state dicts (empty: they fit)."""
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    shapes = [
        f"{k}: file {tuple(theirs[k].shape)} vs {versus} {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(theirs) - skip)
        if theirs[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {keys} {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {keys} {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        parts.append("shape mismatches " + "; ".join(shapes[:5]))
    return parts


def load_weights(module: nn.Module, file: Path) -> None:
    """Load safetensors weights into a module; a mismatch names the differing keys and shapes."""
    weights = read_weights(file)
    parts = describe_mismatch(module.state_dict(), weights)
    if parts:
        raise CheckpointError(
            f"{file} is a checkpoint of another architecture: " + ", ".join(parts)
            + ". Use the config the checkpoint was trained with."
        )
    module.load_state_dict(weights)
