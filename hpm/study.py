"""``hpm study CONFIG``: pre-train several variants x seeds on the same data, evaluate, report.

A study file (YAML, see ``configs/study/``) names a ``base`` pre-training config shared by all
variants, the variants (an ablation YAML and/or overrides, and their seeds) and what to measure.
Every run lives in ``runs_dir/<variant>/seed_<s>/`` and every finished piece of work leaves a
file there, so re-running the command continues where it stopped: an interrupted pre-training
resumes from its last checkpoint, finished runs and evaluations are not redone. The report
(``results.json``, ``results.md`` and ``curves.png`` in ``report_dir``) is rewritten from
whatever has finished after every job (``--report-only`` rebuilds it without training).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpm.config import Config, _deep_merge, config_from_dict, load_yaml_file
from hpm.engine.checkpoint import atomic_write_text
from hpm.engine.logger import LOG, read_metrics, setup_logging
from hpm.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantSpec(_Strict):
    """One way of pre-training: an ablation file and/or overrides on top of ``base``."""

    name: str
    config: str | None = None  # YAML of overrides, relative to the working directory
    overrides: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    priority: int = 1  # lower runs first; within a priority, seed-major (all variants' first seed first)
    finetune_seeds: list[int] = Field(default_factory=list)
    # train for as long (wall clock) as this variant's run of the same seed took: epochs =
    # match_time_of's epochs x (images/s of time_reference / images/s of match_time_of), both
    # measured in this study (time_reference: a finished run of this variant's own recipe)
    match_time_of: str | None = None
    time_reference: str | None = None  # a variant with this one's recipe: its measured speed sets the epochs
    # a finished run of another study to report here instead of training one, e.g.
    # runs/study/fmnist_reference/mae/seed_{seed}; it is evaluated in place (same eval settings)
    reuse: str | None = None
    description: str = ""


class StudyEval(_Strict):
    """What every finished run is evaluated with (identical data for all runs)."""

    train_subset: int | None = 10000
    test_subset: int | None = 2000
    seed: int = 0  # chooses the evaluation subsets (the same for every run)
    pool: str = "cls"
    knn_k: int = 20
    linear: bool = True
    # fine-tuning of a variant's finetune_seeds: the recipe (hpm.eval.finetune.RECIPES), run with
    # the recipe seed = the pre-training seed; the same recipe for the random-init floor's seeds
    finetune_recipe: str = "reference"
    finetune_overrides: dict[str, Any] = Field(default_factory=dict)  # keys of the recipe to change
    floor_finetune_seeds: list[int] = Field(default_factory=list)  # random-init encoders fine-tuned
    ranking_images: int = 512  # test images for the teacher's ranking quality
    ranking_masks: int = 10
    precision: str = "auto"


class StudySpec(_Strict):
    """A whole study file."""

    name: str
    runs_dir: str
    report_dir: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    eval: StudyEval = StudyEval()
    floors: bool = True  # random-init encoder and raw pixels under the same k-NN and probe
    variants: list[VariantSpec]
    reference: dict[str, Any] = Field(default_factory=dict)  # published figures shown beside ours
    # per-seed differences of every other variant against these (same seed), in the report
    compare_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "StudySpec":
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        for v in self.variants:
            for ref in (v.match_time_of, v.time_reference):
                if ref is not None and ref not in names:
                    raise ValueError(f"variant {v.name!r} refers to unknown variant {ref!r}")
            if (v.match_time_of is None) != (v.time_reference is None):
                raise ValueError(f"variant {v.name!r}: give both match_time_of and time_reference")
            if v.reuse is not None and len(v.seeds) > 1 and "{seed}" not in v.reuse:
                raise ValueError(f"variant {v.name!r}: reuse must contain {{seed}} for several seeds")
            if not set(v.finetune_seeds) <= set(v.seeds):
                raise ValueError(f"variant {v.name!r}: finetune_seeds must be among its seeds")
        unknown = sorted(set(self.compare_to) - set(names))
        if unknown:
            raise ValueError(f"compare_to names unknown variant(s) {unknown}")
        return self


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` (nested dict) are merged on top."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"study file {file} does not exist (see configs/study/)")
    raw = load_yaml_file(file) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"study file {file} must hold a mapping")
    raw = _deep_merge(raw, overrides or {})
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'study'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid study file {file}:\n  " + "\n  ".join(lines)) from None
    for v in spec.variants:  # fail before any work if a variant's config does not resolve
        variant_config(spec, v, v.seeds[0] if v.seeds else 0)
    return spec


@dataclass(frozen=True)
class Job:
    """One pre-training run of the study."""

    variant: VariantSpec
    seed: int
    run_dir: Path


def variant_config(spec: StudySpec, variant: VariantSpec, seed: int, epochs: int | None = None) -> Config:
    """The resolved pre-training config of one run: base, then the variant's file, overrides, seed."""
    raw = copy.deepcopy(spec.base)
    if variant.config is not None:
        file = Path(variant.config)
        if not file.is_file():
            raise ConfigError(f"variant {variant.name!r}: config file {file} does not exist")
        raw = _deep_merge(raw, load_yaml_file(file) or {})
    raw = _deep_merge(raw, variant.overrides)
    raw = _deep_merge(raw, {"train": {"seed": seed}, "output_dir": str(run_dir(spec, variant.name, seed))})
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"variant {variant.name!r}: {exc}") from None


def run_dir(spec: StudySpec, name: str, seed: int) -> Path:
    """Where a variant's run of a seed lives: in the study's runs_dir, or the reused run."""
    variant = next((v for v in spec.variants if v.name == name), None)
    if variant is not None and variant.reuse is not None:
        return Path(variant.reuse.format(seed=seed))
    return Path(spec.runs_dir) / name / f"seed_{seed}"


def plan(spec: StudySpec) -> list[Job]:
    """All runs in execution order: by priority, then seed index, then the order in the file."""
    keyed = []
    for vi, v in enumerate(spec.variants):
        for si, seed in enumerate(v.seeds):
            keyed.append(((v.priority, si, vi), Job(v, seed, run_dir(spec, v.name, seed))))
    return [job for _, job in sorted(keyed, key=lambda kv: kv[0])]


# ------------------------------------------------------------------ per-run files
def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _done_file(d: Path) -> Path:
    return d / "study_pretrain.json"


def _eval_file(d: Path, what: str) -> Path:
    return d / "eval" / f"study_{what}.json"


def _finetune_file(d: Path, recipe: str) -> Path:
    """A run's fine-tune result under a recipe (its checkpoints: the same path without .json)."""
    return _eval_file(d, f"finetune_{recipe}")


def _finetune_options(spec: StudySpec, seed: int, out: Path, **kwargs: Any) -> Any:
    """Evaluation options of a study fine-tune: the study's recipe with the recipe seed ``seed``."""
    from hpm.eval.finetune import build_finetune_config
    from hpm.eval.run import EvalOptions

    ev = spec.eval
    opts = EvalOptions(seed=ev.seed, pool=ev.pool, precision=ev.precision, out=out, **kwargs)
    opts.finetune = build_finetune_config(ev.finetune_recipe, overrides={**ev.finetune_overrides, "seed": seed})
    return opts


def throughput(d: Path) -> float | None:
    """Median pre-training images/s of a finished run (None if not finished)."""
    done = _read_json(_done_file(d))
    return None if done is None else float(done["img_per_s"])


def _matched_epochs(spec: StudySpec, job: Job) -> int | None:
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


def _pretrain(spec: StudySpec, job: Job, epochs: int | None) -> None:
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
    _write_json(_done_file(job.run_dir), {
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


# 2: real_retest_spearman and *_masked_avg_* added (figures of version 1 are unchanged)
# 3: teacher_* measure the teacher as configured (mask.teacher_view), teacher_full_* the full-image
#    pass (for a full-view run the same figures as version 2's teacher_*)
RANKING_VERSION = 3


def _eval_run(spec: StudySpec, job: Job) -> None:
    """k-NN, linear probe, ranking quality and (for finetune seeds) fine-tuning of one run."""
    from hpm.eval.run import EvalOptions, run_eval

    ev = spec.eval
    base = dict(train_subset=ev.train_subset, test_subset=ev.test_subset, seed=ev.seed, pool=ev.pool, precision=ev.precision)
    todo = [("knn", _eval_file(job.run_dir, "knn"))] + ([("linear", _eval_file(job.run_dir, "linear"))] if ev.linear else [])
    if job.seed in job.variant.finetune_seeds:
        todo.append(("finetune", _finetune_file(job.run_dir, ev.finetune_recipe)))
    for protocol, out in todo:
        if out.is_file():
            continue
        opts = _finetune_options(spec, job.seed, out) if protocol == "finetune" else EvalOptions(**base, out=out)
        LOG.info("study %s: %s / seed %d: %s", spec.name, job.variant.name, job.seed, protocol)
        run_eval(protocol, job.run_dir, opts)  # type: ignore[arg-type]
    out = _eval_file(job.run_dir, "ranking")
    if (_read_json(out) or {}).get("version", 1) < RANKING_VERSION:  # missing, or made by older code
        LOG.info("study %s: %s / seed %d: ranking quality", spec.name, job.variant.name, job.seed)
        _write_json(out, ranking_eval(spec, job.run_dir))


def ranking_eval(spec: StudySpec, path: Path) -> dict[str, Any]:
    """Teacher / student full-image prediction vs the real loss averaged over random masks."""
    import torch

    from hpm.eval.data import build_eval_data
    from hpm.eval.patch_loss import load_pretrained, ranking_quality

    models = load_pretrained(path)
    cfg = models.cfg
    if not models.student.has_predictor:
        return {"version": RANKING_VERSION, "available": False}
    data = build_eval_data(cfg.data, cfg.model.img_size, int(cfg.model.in_chans or 1), None, spec.eval.ranking_images, spec.eval.seed)
    dataset = data.test.with_transform(data.transform())
    imgs = torch.stack([dataset[i][0] for i in range(len(dataset))])  # [N, C, H, W]
    started = time.perf_counter()
    result = ranking_quality(models, imgs, spec.eval.ranking_masks, seed=spec.eval.seed)
    return {"version": RANKING_VERSION, "available": True, "images": int(imgs.shape[0]), "masks": spec.eval.ranking_masks,
            "seconds": round(time.perf_counter() - started, 2), **result}


def _floors(spec: StudySpec) -> None:
    """Random-init encoder (the base architecture) and raw pixels under the same k-NN and probe."""
    from hpm.eval.data import build_eval_data
    from hpm.eval.knn import run_knn
    from hpm.eval.linear import LinearProbeConfig, run_linear
    from hpm.eval.run import EvalOptions, run_eval

    ev = spec.eval
    floor_dir = Path(spec.runs_dir) / "floors"
    cfg = variant_config(spec, spec.variants[0], 0)
    kept = _archived_floors(spec)
    for protocol in ["knn"] + (["linear"] if ev.linear else []):
        if all((kept.get(kind) or {}).get(f"{protocol}_top1") is not None for kind in ("random_init", "raw_pixels")) \
                and not any((floor_dir / f"{kind}_{protocol}.json").is_file() for kind in ("random_init", "raw_pixels")):
            continue  # figures kept from the report (the files are gone with an old machine)
        out = floor_dir / f"random_init_{protocol}.json"
        if not out.is_file():
            LOG.info("study %s: random-init floor: %s", spec.name, protocol)
            opts = EvalOptions(random_init=True, cfg=cfg, train_subset=ev.train_subset, test_subset=ev.test_subset,
                               seed=ev.seed, pool=ev.pool, precision=ev.precision, out=out)
            run_eval(protocol, None, opts)  # type: ignore[arg-type]
        out = floor_dir / f"raw_pixels_{protocol}.json"
        if not out.is_file():
            LOG.info("study %s: raw-pixels floor: %s", spec.name, protocol)
            data = build_eval_data(cfg.data, cfg.model.img_size, 1 if cfg.data.dataset == "fashion_mnist" else (cfg.data.channels or 3),
                                   ev.train_subset, ev.test_subset, ev.seed)
            started = time.perf_counter()
            result = run_knn(None, data) if protocol == "knn" else run_linear(None, data, probe_cfg=LinearProbeConfig())
            _write_json(out, {"protocol": protocol, "source": {"kind": "raw_pixels"}, "data": data.describe(),
                              "result": result, "seconds": round(time.perf_counter() - started, 3)})


def _floor_finetunes(spec: StudySpec) -> None:
    """Random-init encoders (init seed = recipe seed = s) fine-tuned with the study's recipe."""
    from hpm.eval.run import run_eval

    cfg = variant_config(spec, spec.variants[0], 0)
    kept = _kept_floor_finetunes(spec)
    for seed in spec.eval.floor_finetune_seeds:
        out = _floor_finetune_file(spec, seed)
        if seed in kept and not out.is_file():
            LOG.info("study %s: random-init floor: fine-tune, seed %d is kept from the report (its file is gone; "
                     "delete it from floors.random_init.finetune_top1.per_seed in results.json to redo it)", spec.name, seed)
        elif not out.is_file():
            LOG.info("study %s: random-init floor: fine-tune, seed %d", spec.name, seed)
            run_eval("finetune", None, _finetune_options(spec, seed, out, random_init=True, cfg=cfg, init_seed=seed))
            write_report(spec)  # each seed's figure is in the report as soon as it is there


def _floor_finetune_file(spec: StudySpec, seed: int) -> Path:
    return Path(spec.runs_dir) / "floors" / f"random_init_finetune_{spec.eval.finetune_recipe}_seed_{seed}.json"


def _kept_floor_finetunes(spec: StudySpec) -> dict[int, float]:
    """Random-init fine-tune top-1 per seed from the last report, under the study's recipe (kept
    like archived runs when the result files are gone, e.g. on a new machine)."""
    kept = (_archived_floors(spec).get("random_init") or {}).get("finetune_top1") or {}
    if kept.get("recipe") != spec.eval.finetune_recipe:
        return {}
    return {int(s): float(v) for s, v in (kept.get("per_seed") or {}).items() if v is not None}


def archived_runs(spec: StudySpec) -> dict[tuple[str, int], dict[str, Any]]:
    """Per-run figures of the last report (``report_dir/results.json``) whose run directories are
    gone, e.g. on a new machine: the study keeps them in its report and does not retrain them
    (delete a run's entry from results.json to retrain it)."""
    out = {}
    for r in _previous_report(spec).get("runs", []):
        if not _done_file(run_dir(spec, r["variant"], r["seed"])).is_file():
            full = r.get("teacher_rank_spearman") is not None  # reports before teacher_view: full view
            defaults = {"teacher_top25_train": None, "teacher_view": "full" if full else None,
                        "teacher_full_rank_spearman": r.get("teacher_rank_spearman"),
                        "teacher_full_rank_top25": r.get("teacher_rank_top25")}
            out[(r["variant"], int(r["seed"]))] = {**defaults, **r, "archived": True}
    return out


def _archived_floors(spec: StudySpec) -> dict[str, dict[str, Any]]:
    return _previous_report(spec).get("floors", {})


def _previous_report(spec: StudySpec) -> dict[str, Any]:
    """The study's last ``results.json`` (empty if missing or written by another study)."""
    prev = _read_json(Path(spec.report_dir) / "results.json") or {}
    return prev if prev.get("study") == spec.name else {}


def run_study(spec: StudySpec, only: list[str] | None = None, max_jobs: int | None = None) -> Path:
    """Run (or continue) the study; returns the report directory.

    Args:
        spec: The study.
        only: Run only these variants (the report still covers everything finished); ``floors``
            names the random-init fine-tunes (``eval.floor_finetune_seeds``), which otherwise run
            after every variant's runs.
        max_jobs: Stop after this many pre-training runs were started in this call.
    """
    setup_logging(True)
    if only:
        unknown = sorted(set(only) - {v.name for v in spec.variants} - {"floors"})
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; the study has {[v.name for v in spec.variants]}")
    Path(spec.runs_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(spec.runs_dir) / "study.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    if spec.floors:
        _floors(spec)
        write_report(spec)
    started = 0
    deferred: list[Job] = []
    archived = archived_runs(spec)
    for job in plan(spec):
        if only and job.variant.name not in only:
            continue
        if (job.variant.name, job.seed) in archived:
            LOG.info("study %s: %s / seed %d is kept from the report (its run directory is gone; delete its "
                     "entry from results.json to retrain it)", spec.name, job.variant.name, job.seed)
            continue
        epochs = None
        if job.variant.match_time_of is not None:
            epochs = _matched_epochs(spec, job)
            if epochs is None:
                deferred.append(job)
                continue
        if not _done_file(job.run_dir).is_file():
            if job.variant.reuse is not None:
                LOG.warning("study %s: %s / seed %d reuses %s, which has not finished; run it in its own study",
                            spec.name, job.variant.name, job.seed, job.run_dir)
                continue
            if max_jobs is not None and started >= max_jobs:
                continue  # start no more runs; finished ones further on are still evaluated
            started += 1
            LOG.info("study %s: pre-training %s / seed %d -> %s", spec.name, job.variant.name, job.seed, job.run_dir)
            _pretrain(spec, job, epochs)
        _eval_run(spec, job)
        write_report(spec)
    if spec.floors and spec.eval.floor_finetune_seeds and (not only or "floors" in only):
        _floor_finetunes(spec)
    for job in deferred:
        LOG.warning("study %s: %s / seed %d waits for runs of %s and %s of the same seed",
                    spec.name, job.variant.name, job.seed, job.variant.match_time_of, job.variant.time_reference)
    return write_report(spec)


# ------------------------------------------------------------------ report
def _result(path: Path, *keys: str) -> float | None:
    data = _read_json(path)
    if data is None:
        return None
    node: Any = data["result"]
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return None if node is None else float(node)


def _images_per_step(d: Path) -> int:
    train = (yaml.safe_load((d / "config.yaml").read_text()) or {})["train"]
    return int(train["batch_size"]) * int(train.get("accum_steps", 1))


def _last_mean(records: list[dict[str, Any]], key: str, n: int = 5) -> float | None:
    values = [r[key] for r in records if key in r and r[key] is not None]
    return statistics.fmean(values[-n:]) if values else None


def collect(spec: StudySpec) -> dict[str, Any]:
    """Every finished figure of the study, per run and per variant (mean, std over seeds)."""
    k = str(spec.eval.knn_k)
    runs = []
    archived = archived_runs(spec)
    for job in plan(spec):
        done = _read_json(_done_file(job.run_dir))
        if done is None:
            if (job.variant.name, job.seed) in archived:
                runs.append(archived[(job.variant.name, job.seed)])
            continue
        records = read_metrics(job.run_dir / "metrics.jsonl")
        rank = _read_json(_eval_file(job.run_dir, "ranking")) or {}
        runs.append({
            "variant": job.variant.name,
            "seed": job.seed,
            "epochs": done["epochs"],
            "precision": done["precision"],
            "knn_top1": _result(_eval_file(job.run_dir, "knn"), "top1", k),
            "linear_top1": _result(_eval_file(job.run_dir, "linear"), "top1"),
            "finetune_top1": _result(_finetune_file(job.run_dir, spec.eval.finetune_recipe), "top1"),
            "pred_spearman": _last_mean(records, "pred_spearman"),
            "teacher_spearman_train": _last_mean(records, "teacher_spearman"),
            "teacher_top25_train": _last_mean(records, "teacher_top25"),
            # the teacher as configured (mask.teacher_view) and, for comparison, its full-image pass
            "teacher_view": rank.get("teacher_view", "full" if "teacher_spearman" in rank else None),
            "teacher_rank_spearman": rank.get("teacher_spearman"),
            "teacher_rank_top25": rank.get("teacher_top25"),
            "teacher_full_rank_spearman": rank.get("teacher_full_spearman", rank.get("teacher_spearman")),
            "teacher_full_rank_top25": rank.get("teacher_full_top25", rank.get("teacher_top25")),
            "student_rank_spearman": rank.get("student_spearman"),
            "student_masked_spearman": rank.get("student_masked_spearman"),
            "real_retest_spearman": rank.get("real_retest_spearman"),
            "teacher_masked_avg_spearman": rank.get("teacher_masked_avg_spearman"),
            "teacher_masked_avg_top25": rank.get("teacher_masked_avg_top25"),
            "final_loss_rec": _last_mean(records, "loss_rec"),
            "img_per_s": done["img_per_s"],
            "threads": done.get("threads"),
            "train_time_s": done["train_time_s"],
            # the time at the run's median speed: what a quiet machine takes (bursts of other
            # work on a shared machine inflate the wall time, not the median)
            "est_time_s": done["steps"] * _images_per_step(job.run_dir) / done["img_per_s"],
            "archived": False,  # True: figures kept from an earlier report, run directory gone
        })
    metrics = ["knn_top1", "linear_top1", "finetune_top1", "pred_spearman", "teacher_spearman_train", "teacher_top25_train",
               "teacher_rank_spearman", "teacher_rank_top25", "teacher_full_rank_spearman",
               "teacher_full_rank_top25", "student_rank_spearman", "student_masked_spearman",
               "real_retest_spearman", "teacher_masked_avg_spearman", "teacher_masked_avg_top25",
               "final_loss_rec", "img_per_s", "train_time_s", "est_time_s"]
    variants = []
    for v in spec.variants:
        mine = [r for r in runs if r["variant"] == v.name]
        if not mine:
            variants.append({"variant": v.name, "seeds_done": 0, "seeds_planned": len(v.seeds)})
            continue
        row: dict[str, Any] = {"variant": v.name, "seeds_done": len(mine), "seeds_planned": len(v.seeds),
                               "epochs": sorted({r["epochs"] for r in mine}), "description": v.description,
                               "threads": sorted({r["threads"] for r in mine if r["threads"] is not None})}
        for m in metrics:
            values = [r[m] for r in mine if r[m] is not None]
            row[m] = {"mean": statistics.fmean(values) if values else None,
                      "std": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}
        variants.append(row)
    floors = {}
    floor_dir = Path(spec.runs_dir) / "floors"
    kept = _archived_floors(spec)
    for kind in ("random_init", "raw_pixels"):
        floors[kind] = {"knn_top1": _result(floor_dir / f"{kind}_knn.json", "top1", k),
                        "linear_top1": _result(floor_dir / f"{kind}_linear.json", "top1")}
        for key, value in floors[kind].items():
            if value is None:
                floors[kind][key] = (kept.get(kind) or {}).get(key)
    kept_tuned = _kept_floor_finetunes(spec)
    tuned = {s: _result(_floor_finetune_file(spec, s), "top1") for s in spec.eval.floor_finetune_seeds}
    tuned = {s: kept_tuned.get(s) if v is None else v for s, v in tuned.items()}
    values = [v for v in tuned.values() if v is not None]
    floors["random_init"]["finetune_top1"] = {
        "mean": statistics.fmean(values) if values else None, "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values), "recipe": spec.eval.finetune_recipe, "per_seed": {str(s): v for s, v in tuned.items()},
    } if spec.eval.floor_finetune_seeds else (kept.get("random_init") or {}).get("finetune_top1")
    floors["raw_pixels"]["finetune_top1"] = None
    return {"study": spec.name, "description": spec.description, "knn_k": spec.eval.knn_k,
            "variants": variants, "runs": runs, "floors": floors, "reference": spec.reference,
            "finetune_recipe": spec.eval.finetune_recipe, "compare_to": spec.compare_to,
            "differences": seed_differences(runs, spec.compare_to, floors["random_init"].get("finetune_top1"))}


DIFFERENCE_METRICS = ("knn_top1", "linear_top1", "finetune_top1")


def seed_differences(
    runs: list[dict[str, Any]], against: list[str], random_finetune: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Per seed, each variant's k-NN, linear and fine-tune top-1 minus those of each ``against``
    variant's run of the same seed (None where either is missing), and its fine-tune minus the
    random-init fine-tune of the same seed (``finetune_top1_minus_random_init``)."""
    by_key = {(r["variant"], r["seed"]): r for r in runs}
    per_seed = (random_finetune or {}).get("per_seed") or {}
    out = []
    for r in runs:
        random_ft = per_seed.get(str(r["seed"]))
        gain = None if r.get("finetune_top1") is None or random_ft is None else r["finetune_top1"] - random_ft
        if r["variant"] in against:
            if gain is not None:
                out.append({"variant": r["variant"], "seed": r["seed"], "finetune_top1_minus_random_init": gain})
            continue
        row: dict[str, Any] = {"variant": r["variant"], "seed": r["seed"], "finetune_top1_minus_random_init": gain}
        for ref in against:
            other = by_key.get((ref, r["seed"]))
            for m in DIFFERENCE_METRICS:
                a, b = r.get(m), (other or {}).get(m)
                row[f"{m}_minus_{ref}"] = None if a is None or b is None else a - b
        out.append(row)
    return out


def _fmt(cell: dict[str, Any] | float | None, digits: int = 2) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, dict):
        if cell["mean"] is None:
            return "–"
        text = f"{cell['mean']:.{digits}f}"
        return text + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else "")
    return f"{cell:.{digits}f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def format_report(results: dict[str, Any]) -> str:
    """The Markdown tables of :func:`collect`'s results."""
    k = results["knn_k"]
    lines = [f"# Study `{results['study']}`", "", results["description"].strip(), "",
             f"Mean ± sample std over seeds (n = seeds finished). k-NN@{k} and linear-probe top-1 (%) on the "
             "same test images for every run; `pred_spearman`: the student's predictor on its own masked "
             "batches (training log, mean of the last 5 logs); teacher ranking: the EMA teacher's prediction "
             "as the run configures it (`mask.teacher_view`: full image or random partial views) vs the real "
             "loss averaged over random masks (test images); time: training "
             "minutes at the run's median images/s (the per-run table also gives the measured wall time, which "
             "other work on the machine inflates); threads: the CPU threads each run had (images/s and times "
             "compare only between rows with the same threads).", "",
             f"| variant | seeds | epochs | k-NN@{k} | linear | fine-tune | pred_spearman | teacher ranking ρ | "
             "teacher top-25% | img/s | time (min) | threads |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["variants"]:
        if not row["seeds_done"]:
            lines.append(f"| {row['variant']} | 0/{row['seeds_planned']} | – | not run yet | | | | | | | | |")
            continue
        minutes = dict(row["est_time_s"])
        minutes = {**minutes, "mean": minutes["mean"] / 60 if minutes["mean"] is not None else None,
                   "std": minutes["std"] / 60 if minutes["std"] is not None else None}
        lines.append(
            f"| {row['variant']} | {row['seeds_done']}/{row['seeds_planned']} | {','.join(map(str, row['epochs']))} | "
            f"{_fmt(row['knn_top1'])} | {_fmt(row['linear_top1'])} | {_fmt(row['finetune_top1'])} | "
            f"{_fmt(row['pred_spearman'], 3)} | {_fmt(row['teacher_rank_spearman'], 3)} | "
            f"{_fmt(row['teacher_rank_top25'], 3)} | {_fmt(row['img_per_s'], 0)} | {_fmt(minutes, 1)} | "
            f"{','.join(map(str, row['threads'])) or '–'} |"
        )
    floors = results["floors"]
    recipe = results.get("finetune_recipe", "small")
    lines += ["", f"Fine-tune: the `{recipe}` recipe of `hpm eval finetune` (recipe seed = pre-training seed).", "",
              "Floors (no pre-training, same evaluation; the random-init fine-tune: one random encoder per seed):", "",
              f"| features | k-NN@{k} | linear | fine-tune |", "|---|---|---|---|"]
    for kind, row in floors.items():
        lines.append(f"| {kind.replace('_', ' ')} | {_fmt(row['knn_top1'])} | {_fmt(row['linear_top1'])} | "
                     f"{_fmt(row.get('finetune_top1'))} |")
    ranked = [row for row in results["variants"] if row["seeds_done"] and row["student_rank_spearman"]["mean"] is not None]
    if ranked:
        lines += ["", "How well the loss predictor ranks the real per-patch loss (test images; Spearman ρ, mean over "
                  "images; top-25%: share of the truly hardest quarter of the patches also in the predictor's top "
                  "quarter, chance 0.25). Teacher as used: its scores as the run computes them to choose masks "
                  "(view `full`: the whole image; `masked`: random partial views scored at their hidden patches, "
                  "ρ over the patches the views hid, top quarter taken among them, which are the patches a mask can "
                  "take as hard). Teacher, full view: the whole-image pass whatever the run uses. Student, masked "
                  "view: its scores of the masked patches of a random mask against their loss under that mask "
                  "(where the predictor is trained). Teacher, masked views: scores from 10 random partial views, "
                  "z-normalised per view, averaged per patch (a diagnostic). Retest: the real loss from other "
                  "random masks against itself (the ceiling).", "",
                  "| variant | teacher view | teacher as used ρ | as used top-25% | teacher, full view ρ | full view "
                  "top-25% | student, masked view ρ | student, full view ρ | teacher, masked views ρ | masked views "
                  "top-25% | retest ρ |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in ranked:
            views = sorted({r.get("teacher_view") or "–" for r in results["runs"] if r["variant"] == row["variant"]})
            lines.append(f"| {row['variant']} | {','.join(views)} | {_fmt(row['teacher_rank_spearman'], 3)} | "
                         f"{_fmt(row['teacher_rank_top25'], 3)} | {_fmt(row.get('teacher_full_rank_spearman'), 3)} | "
                         f"{_fmt(row.get('teacher_full_rank_top25'), 3)} | {_fmt(row['student_masked_spearman'], 3)} | "
                         f"{_fmt(row['student_rank_spearman'], 3)} | {_fmt(row['teacher_masked_avg_spearman'], 3)} | "
                         f"{_fmt(row['teacher_masked_avg_top25'], 3)} | {_fmt(row['real_retest_spearman'], 3)} |")
    diffs = [d for d in results.get("differences", []) if any(v is not None for k, v in d.items() if "_minus_" in k)]
    if diffs:
        refs = sorted({k.split("_minus_", 1)[1] for d in diffs for k in d if k.startswith("knn_top1_minus_")},
                      key=lambda r: (results.get("compare_to") or []).index(r) if r in (results.get("compare_to") or []) else 0)
        with_ft = any(d.get(f"finetune_top1_minus_{r}") is not None for d in diffs for r in refs)
        with_gain = any(d.get("finetune_top1_minus_random_init") is not None for d in diffs)
        heads = [f"k-NN − {r} | linear − {r}" + (f" | fine-tune − {r}" if with_ft else "") for r in refs]
        heads += ["fine-tune − random init"] if with_gain else []
        lines += ["", "Per-seed differences (top-1 points; the variant minus the same seed's run of the reference):", "",
                  "| variant | seed | " + " | ".join(heads) + " |",
                  "|---|---|" + "---|" * (len(refs) * (3 if with_ft else 2) + with_gain)]
        for d in diffs:
            cells = [f"{_signed(d.get(f'knn_top1_minus_{r}'))} | {_signed(d.get(f'linear_top1_minus_{r}'))}"
                     + (f" | {_signed(d.get(f'finetune_top1_minus_{r}'))}" if with_ft else "") for r in refs]
            cells += [_signed(d.get("finetune_top1_minus_random_init"))] if with_gain else []
            lines.append(f"| {d['variant']} | {d['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "Per run:", "", f"| variant | seed | precision | epochs | k-NN@{k} | linear | fine-tune | pred_spearman | "
              "teacher ranking ρ | img/s | time (min) | wall (min) | threads |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['precision']} | {r['epochs']} | {_fmt(r['knn_top1'])} | "
            f"{_fmt(r['linear_top1'])} | {_fmt(r['finetune_top1'])} | {_fmt(r['pred_spearman'], 3)} | "
            f"{_fmt(r['teacher_rank_spearman'], 3)} | {_fmt(r['img_per_s'], 0)} | {_fmt(r['est_time_s'] / 60, 1)} | "
            f"{_fmt(r['train_time_s'] / 60, 1)} | {r['threads'] if r['threads'] is not None else '–'} |"
        )
    ref = results.get("reference") or {}
    if ref:
        lines += ["", "Reference figures (not produced by this runner):", "", "```yaml",
                  yaml.safe_dump(ref, sort_keys=False).strip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(spec: StudySpec) -> Path:
    """Write ``results.json``, ``results.md`` and (with finished runs) ``curves.png``."""
    out = Path(spec.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = collect(spec)
    _write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_report(results))
    present = [r for r in results["runs"] if not r.get("archived")]
    dirs = [run_dir(spec, r["variant"], r["seed"]) for r in present if r["seed"] == min(
        x["seed"] for x in present if x["variant"] == r["variant"])]
    # with runs kept from an earlier report (no training curves here), curves.png of that report
    # stays and the runs present get their own figure
    curves = "curves_new_runs.png" if len(present) < len(results["runs"]) else "curves.png"
    if dirs:
        try:
            from hpm.viz.plot import plot_runs

            plot_runs(dirs, out / curves, names=[f"{d.parent.name} (seed {d.name[5:]})" for d in dirs])
        except Exception as exc:  # noqa: BLE001 - a figure must not stop hours of training
            LOG.warning("curves.png not written: %s", exc)
    return out


def parse_study_overrides(items: list[str]) -> dict[str, Any]:
    """``["base.train.epochs=5", "runs_dir=runs/x"]`` -> nested dict (YAML-typed values)."""
    from hpm.config import parse_overrides

    return parse_overrides(items)


__all__ = ["StudySpec", "VariantSpec", "load_study", "plan", "run_study", "collect", "format_report",
           "write_report", "variant_config", "ranking_eval"]
