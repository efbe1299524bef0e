"""Masking strategies by their ``mask.strategy`` name.

A new strategy is one file that defines a :class:`~hpm.masking.strategy.MaskStrategy` and one
line here.
"""

from __future__ import annotations

from hpm.errors import ConfigError
from hpm.masking.attention import ATTENTION
from hpm.masking.block import BLOCK
from hpm.masking.hard import HPM
from hpm.masking.random import RANDOM
from hpm.masking.strategy import MaskStrategy, ScoreSource
from hpm.masking.tube import HPM_TUBE, TUBE

STRATEGIES: dict[str, MaskStrategy] = {
    "random": RANDOM,
    "block": BLOCK,
    "hpm": HPM,
    "attention": ATTENTION,
    "tube": TUBE,
    "hpm_tube": HPM_TUBE,
}


def get_strategy(name: str) -> MaskStrategy:
    """The strategy called ``name``.

    Raises:
        ConfigError: No strategy of that name.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"unknown mask.strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def score_source(name: str) -> ScoreSource:
    """What a teacher scores for strategy ``name``: its own scores, else the predicted loss."""
    return get_strategy(name).scores or "loss"
