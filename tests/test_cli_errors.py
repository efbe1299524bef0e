"""The ``hpm`` command as users type it: ``key=value`` overrides anywhere among the flags, and
every failure as one line on the console with a non-zero status (the traceback in train.log)."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

from hpm.cli import build_parser, main
from hpm.cli import plot as plot_command
from hpm.cli.args import flag_overrides
from hpm.cli.study import split_study_args
from hpm.engine.logger import LOG, log_to_file, setup_logging


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_overrides_may_sit_anywhere_among_the_flags() -> None:
    args = _parse(["pretrain", "--subset", "10000", "train.blr=3e-4", "--output-dir", "runs/x",
                   "eval.figures_at_end=false"])
    assert args.subset == 10000 and args.output_dir == "runs/x"
    assert args.overrides == ["train.blr=3e-4", "eval.figures_at_end=false"]
    from hpm.config import build_config

    cfg = build_config(None, flag_overrides(args))
    assert cfg.train.blr == 3e-4 and cfg.eval.figures_at_end is False
    assert cfg.data.subset == 10000 and cfg.output_dir == "runs/x"


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "mask.alpha=1", "--steps", "1", "model.depth=2", "--json"],
        ["study", "configs/study/fmnist_reference.yaml", "--only", "mae", "base.train.epochs=1", "--list",
         "runs_dir=runs/q"],
        ["eval", "finetune", "runs/x", "blr=1e-3", "--epochs", "1", "mixup=0"],
    ],
)
def test_every_command_with_overrides_accepts_them_between_flags(argv: list[str]) -> None:
    args = _parse(argv)
    if args.command == "study":
        split_study_args(args)
        assert args.only == ["mae"]
    assert args.overrides == [a for a in argv if "=" in a]


def test_a_misspelt_flag_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(["pretrain", "train.blr=1", "--outputdir", "x"])
    assert info.value.code == 2 and "unrecognized arguments: --outputdir" in capsys.readouterr().err


def test_debug_flag_on_every_command() -> None:
    for argv in (["pretrain"], ["bench"], ["eval", "knn", "r"], ["export", "r"], ["plot", "r"], ["study", "s.yaml"]):
        assert _parse([*argv, "--debug"]).debug is True


def _boom(args: argparse.Namespace) -> int:
    raise RuntimeError("something inside broke")


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plot_command, "run", _boom)
    setup_logging(True)
    log_to_file(tmp_path / "train.log")
    try:
        code = main(["plot", "r"])
    finally:
        setup_logging(True)  # detach the file
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == f"hpm plot: error: RuntimeError: something inside broke (traceback in {tmp_path / 'train.log'}; " \
                  "--debug prints it here)"
    log = (tmp_path / "train.log").read_text()
    assert "ERROR error: RuntimeError: something inside broke" in log and "Traceback (most recent call last)" in log


def test_debug_prints_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plot_command, "run", _boom)
    assert main(["plot", "r", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("hpm plot: error: RuntimeError: something inside broke")
    monkeypatch.setenv("HPM_DEBUG", "1")
    assert main(["plot", "r"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_full_disk_anywhere_is_a_user_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    def full(args: argparse.Namespace) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/figures/curves.png")

    monkeypatch.setattr(plot_command, "run", full)
    assert main(["plot", "r"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hpm plot: error: the disk is full ([Errno 28] No space left on device: '/data/figures/curves.png')")
    assert "Traceback" not in err and "\n" not in err
    assert LOG.name == "hpm"


def test_a_reset_connection_inside_the_data_loader_is_named_as_a_dead_worker() -> None:
    """A worker SIGKILLed while handing a batch over surfaces as ConnectionResetError raised inside
    torch/utils/data; the one line says a DataLoader worker died (as the fault-injection suite expects)."""
    from hpm.cli.main import _report_error

    scope: dict = {}
    exec(compile("def get():\n    raise ConnectionResetError(104, 'Connection reset by peer')\n",
                 "/site-packages/torch/utils/data/dataloader.py", "exec"), scope)
    try:
        scope["get"]()
    except ConnectionResetError as exc:
        raised = exc
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert _report_error("pretrain", raised, debug=False) == 1
    assert "a DataLoader worker died while handing over a batch" in err.getvalue()
    assert "out of memory?" in err.getvalue()
    with contextlib.redirect_stderr(io.StringIO()) as other:
        _report_error("pretrain", ConnectionResetError(104, "elsewhere"), debug=False)
    assert "DataLoader" not in other.getvalue()
