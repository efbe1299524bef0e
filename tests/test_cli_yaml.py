"""A malformed YAML file given to the ``hpm`` command: exit code 2 and one line naming file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpm.cli import main

MALFORMED = "model: {preset: small\ntrain: [1, 2"  # the parser stops at line 2, column 6


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A YAML file with an unclosed flow mapping on line 1."""
    path = tmp_path / "bad.yaml"
    path.write_text(MALFORMED)
    return path


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["pretrain", "--config", "{bad}"], "pretrain"),
        (["study", "{bad}"], "study"),
        (["eval", "finetune", "--random-init", "--config", "{bad}"], "eval"),
    ],
)
def test_malformed_yaml_is_one_line_on_stderr(
    bad: Path, argv: list[str], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([arg.format(bad=bad) for arg in argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"hpm {command}: error: {bad}:2:6: malformed YAML: ")
    assert "Traceback" not in captured.err and captured.out == ""
