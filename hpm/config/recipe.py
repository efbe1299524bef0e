"""A flat evaluation recipe (fine-tuning, segmentation, detection) validated from a mapping, its
errors explained as one :class:`~hpm.errors.ConfigError` that lists the valid keys."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hpm.errors import ConfigError

R = TypeVar("R", bound=BaseModel)


def validate_recipe(model: type[R], raw: dict[str, Any], what: str) -> R:
    """``model`` validated from ``raw``.

    Args:
        model: The recipe's pydantic class (unknown keys forbidden).
        raw: The resolved keys: the named recipe's, a file's and the overrides.
        what: The recipe's kind in messages (``"fine-tuning"``, ``"segmentation"``, ``"detection"``).

    Raises:
        ConfigError: One line per problem: an unknown key with the valid ones, or an invalid value.
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if not where:  # a check across keys: its message names them
                lines.append(err["msg"].removeprefix("Value error, "))
            elif err["type"] == "extra_forbidden":
                lines.append(f"unknown {what} key '{where}'. Valid keys: {', '.join(model.model_fields)}")
            else:
                lines.append(f"invalid value for {what} key '{where}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"invalid {what} configuration:\n  " + "\n  ".join(lines)) from None
