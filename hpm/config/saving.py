"""Writing a resolved configuration and comparing two of them."""

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


def diff_configs(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys (dotted) whose values differ between two config dicts."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, name + ".")
        elif va != vb:
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out
