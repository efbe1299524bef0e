"""Whether an evaluation source is a video encoder, before it is loaded (the CLI picks the
fine-tune recipes by it)."""

from __future__ import annotations

from pathlib import Path

from hpm.config.presets import VIDEO_PRESETS
from hpm.engine.checkpoint import load_state, resolve_checkpoint


def is_video_source(path: str | Path | None, preset: str | None = None) -> bool:
    """Whether the run directory or checkpoint folder ``path`` holds a video model (its config has
    ``model.num_frames``), or, without ``path``, whether ``preset`` is a video preset."""
    if path is None:
        return preset in VIDEO_PRESETS
    config = load_state(resolve_checkpoint(path)).get("config") or {}
    return (config.get("model") or {}).get("num_frames") is not None
