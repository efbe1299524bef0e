"""Self-describing checkpoints, written atomically.

A checkpoint is a folder ``checkpoints/step_00001234/`` holding
``model.safetensors`` (the student), ``teacher.safetensors`` (the EMA teacher, HPM only) and
``state.pt`` (optimizer, grad scaler, mask generator, schedule position, RNG states and the
resolved config; loaded with ``weights_only=True``). The folder is written under a temporary
name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hpm.errors import CheckpointError

CKPT_DIR = "checkpoints"
_PATTERN = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
) -> Path:
    """Write ``run_dir/checkpoints/step_<step>/`` atomically and keep only the newest ``keep``."""
    root = run_dir / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".step_{step:08d}.", suffix=".tmp"))
    try:
        save_file(_contiguous_state(model), str(tmp / "model.safetensors"))
        if teacher is not None:
            save_file(_contiguous_state(teacher), str(tmp / "teacher.safetensors"))
        torch.save({**state, "format": FORMAT_VERSION, "step": step}, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _PATTERN.match(p.name)]
    found = [p for p in found if (p / "state.pt").is_file() and (p / "model.safetensors").is_file()]
    return sorted(found, key=lambda p: int(_PATTERN.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder or a run directory (its newest checkpoint)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run directory or a checkpoint folder")
    if (p / "state.pt").is_file() and (p / "model.safetensors").is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise CheckpointError(
            f"{p} holds no checkpoint (expected {p}/{CKPT_DIR}/step_*/ or a folder with "
            "model.safetensors and state.pt)"
        )
    return latest


def load_state(ckpt: Path) -> dict[str, Any]:
    """Read ``state.pt`` (weights_only=True)."""
    try:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"cannot read {ckpt / 'state.pt'}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{ckpt / 'state.pt'} is not an hpm checkpoint of format {FORMAT_VERSION} (found format {found})"
        )
    return state


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing or unreadable file is a CheckpointError."""
    if not file.is_file():
        raise CheckpointError(f"missing weights file {file}")
    try:
        return load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"cannot read {file}: {exc}") from exc


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
