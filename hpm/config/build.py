"""Resolving a run's configuration: defaults, model preset, YAML file and overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hpm.config.loading import load_yaml_mapping, one_line
from hpm.config.presets import ALL_PRESETS
from hpm.config.sections import Config, ModelConfig
from hpm.errors import ConfigError


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in, nested mappings merged key by key.

    Args:
        base: The mapping to start from (not modified).
        update: The keys that win; a mapping merges into a mapping, anything else replaces.

    Returns:
        The merged mapping.
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_deep_merge = deep_merge


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.epochs=5", "model.preset=vit_b16"]`` into a nested dict (YAML-typed values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({one_line(problem)})") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def _valid_keys(section: type[BaseModel]) -> list[str]:
    return list(section.model_fields)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "config"
        if err["type"] == "extra_forbidden":
            node: type[BaseModel] = Config
            for part in loc[:-1]:
                node = node.model_fields[part].annotation  # type: ignore[assignment]
            valid = ", ".join(_valid_keys(node))
            lines.append(f"unknown key '{where}'. Valid keys here: {valid}")
        else:
            lines.append(f"invalid value for '{where}': {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def build_config(
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults, the model preset, an optional YAML file and overrides into a Config."""
    raw: dict[str, Any] = {}
    if file is not None:
        raw = deep_merge(raw, load_yaml_mapping(file, "config file", "sections"))
    if overrides:
        raw = deep_merge(raw, overrides)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validate a (partial) nested dict; the model preset fills the model keys not given."""
    raw = copy.deepcopy(raw)
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError("'model' must be a mapping")
    preset = model.get("preset", ModelConfig.model_fields["preset"].default)
    if preset not in ALL_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}. Valid presets: {', '.join(ALL_PRESETS)}")
    raw["model"] = {**ALL_PRESETS[preset], **model}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
