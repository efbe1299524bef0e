"""Reading a user's YAML file, with one-line errors that point at the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpm.errors import ConfigError


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


def _yaml_error_message(path: Path, exc: yaml.YAMLError) -> str:
    """``FILE:LINE:COLUMN: malformed YAML: PROBLEM`` (1-based), or without position if unknown."""
    if isinstance(exc, yaml.reader.ReaderError):  # bytes that are not text: an offset, no line
        reason = one_line(str(exc).splitlines()[0])
        return (
            f"{path}: malformed YAML: {reason} at offset {exc.position}; "
            "YAML must be UTF-8 text without control characters"
        )
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"{path}: malformed YAML: {one_line(str(exc))}"
    message = f"{path}:{mark.line + 1}:{mark.column + 1}: malformed YAML: {one_line(problem)}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        message += f" ({one_line(context)} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return message


def load_yaml_file(path: str | Path) -> Any:
    """Parse a user's YAML file; ``None`` for an empty file.

    Raises:
        ConfigError: The file cannot be read or is not valid YAML; the message is one line,
            ``FILE:LINE:COLUMN: malformed YAML: PROBLEM``, pointing at the error.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:  # bytes: PyYAML detects the encoding and names the file
            return yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_message(path, exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read YAML file {path}: {exc.strerror or exc}") from None


def load_yaml_mapping(path: str | Path, what: str = "config file", holds: str = "keys", hint: str = "") -> dict[str, Any]:
    """A user's YAML file that must hold a mapping (``{}`` for an empty file).

    Args:
        path: The file.
        what: How errors name it, e.g. ``"study file"``.
        holds: What the mapping holds, for the error (``"sections"``, ``"keys"``).
        hint: Appended to the missing-file error, e.g. ``" (see configs/study/)"``.

    Raises:
        ConfigError: The file is missing, unreadable, malformed YAML or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist{hint}")
    loaded = load_yaml_file(path) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of {holds}")
    return loaded
