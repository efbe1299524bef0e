"""One explanation of a bad evaluation recipe: unknown keys with the valid ones, bad values, cross-key checks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from hpm.config.recipe import validate_recipe
from hpm.errors import ConfigError


class _Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-3
    epochs: int = 2

    @model_validator(mode="after")
    def _check(self) -> "_Recipe":
        if self.epochs > 100:
            raise ValueError("epochs above 100 need lr below 1e-2")
        return self


def test_a_valid_mapping_gives_the_recipe() -> None:
    assert validate_recipe(_Recipe, {"lr": "2e-3"}, "toy") == _Recipe(lr=2e-3)


def test_every_problem_gets_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        validate_recipe(_Recipe, {"lr": "fast", "epoch": 3}, "toy")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid toy configuration:"
    assert "invalid value for toy key 'lr'" in lines[1] and "(got 'fast')" in lines[1]
    assert lines[2].strip() == "unknown toy key 'epoch'. Valid keys: lr, epochs"


def test_a_check_across_keys_says_its_own_message_without_the_input() -> None:
    with pytest.raises(ConfigError) as info:
        validate_recipe(_Recipe, {"epochs": 200}, "toy")
    assert str(info.value).splitlines()[1].strip() == "epochs above 100 need lr below 1e-2"
