"""Run configuration: one default, model presets, YAML files and ``key=value`` overrides.

Resolution order (later wins): built-in defaults -> model preset -> ``--config`` YAML ->
command-line flags and ``section.key=value`` overrides. Every key is validated before any
work starts; an unknown key or a bad value raises :class:`ConfigError` naming what is valid.
"""

from hpm.config.build import _deep_merge, build_config, config_from_dict, deep_merge, parse_overrides
from hpm.config.loading import load_yaml_file, load_yaml_mapping
from hpm.config.presets import ALL_PRESETS, PRESETS, TIMM_NAMES, VIDEO_PRESETS
from hpm.config.saving import config_to_dict, save_config
from hpm.config.sections import (
    FASHION_MNIST_ROOT,
    Config,
    DataConfig,
    EmaConfig,
    EvalConfig,
    LossConfig,
    MaskConfig,
    ModelConfig,
    Precision,
    TargetName,
    TrainConfig,
)
from hpm.errors import ConfigError

__all__ = [
    "ALL_PRESETS",
    "FASHION_MNIST_ROOT",
    "PRESETS",
    "TIMM_NAMES",
    "VIDEO_PRESETS",
    "Config",
    "ConfigError",
    "DataConfig",
    "EmaConfig",
    "EvalConfig",
    "LossConfig",
    "MaskConfig",
    "ModelConfig",
    "Precision",
    "TargetName",
    "TrainConfig",
    "_deep_merge",
    "build_config",
    "config_from_dict",
    "config_to_dict",
    "deep_merge",
    "load_yaml_file",
    "load_yaml_mapping",
    "parse_overrides",
    "save_config",
]
