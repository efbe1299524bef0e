"""Writing a resolved configuration: a plain dict and its YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpm.config.sections import Config
from hpm.io import atomic_write_text


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, YAML-safe dict of a resolved config."""
    return cfg.model_dump(mode="json")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

