"""``hpm pretrain`` as a whole: the training loop of :mod:`hpm.engine.train`, the k-NN monitor it
calls between epochs, and the end-of-run work (k-NN, figures, a summary of the outputs).

The engine knows nothing of evaluation or pictures; this module wires them in, so the CLI,
``hpm study`` and scripts pre-train the same way.
"""

from __future__ import annotations

from pathlib import Path

from hpm.config import Config
from hpm.data.labelled import has_class_labels
from hpm.engine.distributed import launched_rank
from hpm.engine.lock import RunDirLock
from hpm.engine.logger import LOG, MetricsLogger, read_metrics
from hpm.engine.outdir import check_output_dir
from hpm.engine.train import RunSummary, pretrain
from hpm.eval.monitor import KnnMonitor


def run_pretrain(cfg: Config) -> RunSummary:
    """Pre-train (resuming from ``cfg.output_dir``), then on rank 0 the final k-NN (unless a
    finished run re-run has it already) and the run's figures; the run directory is locked
    throughout.

    Raises:
        OutputDirError: ``cfg.output_dir`` cannot be written (checked before anything is loaded).
        RunDirInUse: Another process runs in ``cfg.output_dir``.
        Preempted: A stop signal ended training; nothing of the end-of-run work was done (re-run).
    """
    check_output_dir(cfg.output_dir)
    with RunDirLock(cfg.output_dir, launched_rank() == 0):
        return _pretrain_and_report(cfg)


def _pretrain_and_report(cfg: Config) -> RunSummary:
    """The pre-training, then rank 0's end-of-run work (the k-NN only on labelled data)."""
    monitor = KnnMonitor(cfg)
    video = cfg.model.num_frames is not None
    labelled = not video and (cfg.data.data_dir is None or has_class_labels(cfg.data.data_dir))
    if not video and not labelled and (cfg.eval.knn_at_end or cfg.eval.knn_every_epochs):
        LOG.info("%s has no class labels: the k-NN evaluations are skipped", cfg.data.data_dir)
    summary = pretrain(cfg, on_epoch_end=monitor if cfg.eval.knn_every_epochs and labelled else None)
    if not summary.is_main:
        return summary
    run_dir = summary.run_dir
    if video:  # logged here, where the run's log is open
        LOG.info("video pre-training: the k-NN evaluations read images and are skipped; the clips' losses, "
                 "mask and reconstruction are drawn in figures/clips.png and clips.gif")
    if labelled and cfg.eval.knn_at_end and summary.model is not None and not _logged(run_dir, summary.steps, "knn_top1"):
        metrics = MetricsLogger(run_dir, append=True)
        metrics.log(monitor(summary.model, cfg.train.epochs - 1, summary.steps))
        metrics.close()
    if cfg.eval.figures_at_end:
        from hpm.viz.figures import write_run_figures

        write_run_figures(run_dir, video=video)
    _log_outputs(cfg, summary)
    return summary


def _logged(run_dir: Path, step: int, key: str) -> bool:
    """Whether ``metrics.jsonl`` already holds ``key`` for ``step`` (a finished run re-run)."""
    return any(r.get("step") == step and key in r for r in read_metrics(run_dir / "metrics.jsonl"))


def _log_outputs(cfg: Config, summary: RunSummary) -> None:
    run_dir = summary.run_dir
    LOG.info(
        "done: %d steps, final loss %s. Outputs in %s:\n"
        "  config.yaml        resolved config\n"
        "  metrics.jsonl      one record per %d steps (tensorboard --logdir %s)\n"
        "  train.log          this log\n"
        "%s"
        "  %s  newest checkpoint (re-running the same command resumes from it)",
        summary.steps, f"{summary.final_loss:.4f}" if summary.final_loss is not None else "n/a", run_dir,
        cfg.train.log_every, run_dir / "tensorboard",
        "  figures/           training curves and predicted-loss panels (hpm plot, hpm visualize)\n"
        if cfg.eval.figures_at_end else "",
        summary.checkpoint.relative_to(run_dir) if summary.checkpoint else "checkpoints/",
    )
