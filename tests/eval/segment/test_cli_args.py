"""``hpm eval segment``'s command line: overrides among the flags, flags into the recipe."""

from __future__ import annotations

from hpm.cli.parser import build_parser


def test_overrides_may_sit_among_the_flags() -> None:
    argv = ["eval", "segment", "runs/x", "lr=1e-3", "--epochs", "1", "crop_size=32", "--data-dir", "d",
            "--reduce-zero-label", "--recipe", "ade20k", "--head", "linear", "--labels", "8"]
    args = build_parser().parse_args(argv)
    assert args.path == "runs/x" and args.overrides == ["lr=1e-3", "crop_size=32"] and args.data_dir == "d"
    assert args.reduce_zero_label and args.recipe == "ade20k" and args.head == "linear" and args.labels == 8


def test_a_random_encoder_takes_overrides_without_a_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hpm.eval.segment as segment

    seen = {}
    monkeypatch.setattr(segment, "run_segment_eval", lambda path, opts: seen.update(path=path, opts=opts) or ({}, None))
    args = build_parser().parse_args(["eval", "segment", "--random-init", "lr=1e-3", "--data-dir", "d", "--epochs", "2",
                                      "--reduce-zero-label"])
    assert args.func(args) == 0
    recipe = seen["opts"].recipe
    assert seen["path"] is None and recipe.lr == 1e-3 and recipe.epochs == 2 and recipe.reduce_zero_label
    assert seen["opts"].cfg.model.in_chans == 3  # the scenes and ADE20K are RGB


def test_a_preset_with_a_checkpoint_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from hpm.cli import main

    out = tmp_path / "r.json"
    assert main(["eval", "segment", str(tmp_path), "--preset", "small64", "--data-dir", "d", "--out", str(out)]) == 2
    assert "--preset only applies without a checkpoint" in capsys.readouterr().err
    assert not out.exists()
