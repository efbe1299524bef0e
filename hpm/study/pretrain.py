"""One pre-training run of a study, its summary file, and the epochs of compute-matched variants."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from hpm.engine.logger import read_metrics
from hpm.errors import ConfigError
from hpm.study.files import done_file, read_json, write_json
from hpm.study.plan import Job
from hpm.study.spec import StudySpec, run_dir, variant_config


def throughput(d: Path) -> float | None:
    """Median pre-training images/s of a finished run (None if not finished)."""
    done = read_json(done_file(d))
    return None if done is None else float(done["img_per_s"])


def matched_epochs(spec: StudySpec, job: Job) -> int | None:
    """Epochs that take ``match_time_of``'s training time (None until both runs have finished).

    The time ratio is taken from the two runs' median images/s, which a burst of other work
    on the machine moves less than the total wall time.
    """
    v = job.variant
    target = throughput(run_dir(spec, v.match_time_of, job.seed))  # type: ignore[arg-type]
    reference = throughput(run_dir(spec, v.time_reference, job.seed))  # type: ignore[arg-type]
    if target is None or reference is None:
        return None
    target_variant = next(x for x in spec.variants if x.name == v.match_time_of)
    target_epochs = variant_config(spec, target_variant, job.seed).train.epochs
    return max(1, round(target_epochs * reference / target))


def pretrain(spec: StudySpec, job: Job, epochs: int | None) -> None:
    """Pre-train one run (resuming its checkpoint) and write its ``study_pretrain.json``."""
    import torch

    from hpm.pretrain import run_pretrain

    cfg = variant_config(spec, job.variant, job.seed, epochs)
    started = time.perf_counter()
    summary = run_pretrain(cfg)
    records = read_metrics(job.run_dir / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    if not steps:
        raise ConfigError(f"{job.run_dir}/metrics.jsonl holds no training records")
    speeds = [r["img_per_s"] for r in steps[1:]] or [steps[0]["img_per_s"]]  # the first window includes start-up
    write_json(done_file(job.run_dir), {
        "variant": job.variant.name,
        "seed": job.seed,
        "epochs": cfg.train.epochs,
        "steps": summary.steps,
        "precision": cfg.train.precision,
        "train_time_s": steps[-1].get("time_s", time.perf_counter() - started),
        "img_per_s": statistics.median(speeds),
        # images/s depends on the CPU threads the run had (OMP_NUM_THREADS; runs sharing a
        # machine may each get fewer); recorded so the report can say so
        "threads": torch.get_num_threads(),
        "final_loss": summary.final_loss,
        "checkpoint": str(summary.checkpoint),
    })
