"""The study's pre-training runs and the order they run in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpm.study.spec import StudySpec, VariantSpec, run_dir


@dataclass(frozen=True)
class Job:
    """One pre-training run of the study."""

    variant: VariantSpec
    seed: int
    run_dir: Path


def plan(spec: StudySpec) -> list[Job]:
    """All runs in execution order: by priority, then seed index, then the order in the file."""
    keyed = []
    for vi, v in enumerate(spec.variants):
        for si, seed in enumerate(v.seeds):
            keyed.append(((v.priority, si, vi), Job(v, seed, run_dir(spec, v.name, seed))))
    return [job for _, job in sorted(keyed, key=lambda kv: kv[0])]
