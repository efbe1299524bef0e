"""Resuming a run: the one refusal to continue a run directory with another configuration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hpm.errors import ConfigError

_ABSENT = "<absent>"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_keys(saved: Mapping[str, Any], now: Mapping[str, Any], free: Iterable[str] = ()) -> list[str]:
    """``"key: saved -> now"`` for every dotted key whose value differs, in key order.

    Args:
        saved: The configuration the run directory holds (nested).
        now: The configuration of this invocation (nested).
        free: Keys that may differ (a key ending in ``.`` frees every key under it).
    """
    a, b = flatten(saved), flatten(now)
    free = tuple(free)

    def is_free(key: str) -> bool:
        return any(key.startswith(f) if f.endswith(".") else key == f for f in free)

    return [
        f"{key}: {a.get(key, _ABSENT)!r} -> {b.get(key, _ABSENT)!r}"
        for key in sorted(set(a) | set(b))
        if not is_free(key) and a.get(key, _ABSENT) != b.get(key, _ABSENT)
    ]


def refuse_changed(run_dir: Path, holds: str, diffs: list[str], what_to_do: str) -> None:
    """Raise :class:`~hpm.errors.ConfigError` naming each changed key when ``diffs`` is not empty.

    Args:
        run_dir: The run directory.
        holds: What it holds, e.g. "a run with a different config".
        diffs: :func:`changed_keys` of the saved and the present configuration.
        what_to_do: The sentence that tells the user how to go on.
    """
    if diffs:
        raise ConfigError(
            f"{run_dir} holds {holds}, so it cannot be resumed (saved -> now):\n  " + "\n  ".join(diffs) + f"\n{what_to_do}"
        )
