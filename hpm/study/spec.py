"""The study file: its schema (base config, variants, evaluation), loading and per-run configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from hpm.config import Config, _deep_merge, config_from_dict, load_yaml_mapping
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


TaskName = Literal["segment", "detect", "knn", "linear", "finetune"]


class TaskEval(_Strict):
    """One more evaluation of every run and of random-init floors: segmentation or detection
    (``hpm eval segment`` / ``detect``), or k-NN, probe or fine-tune with settings of their own
    (e.g. a video run's label kind)."""

    name: str  # the result file: RUN/eval/study_<name>.json
    task: TaskName
    data_dir: str | None = None  # segment/detect: ADE20K's / COCO's layout; others: None is the run's data
    recipe: str | None = None  # segment/detect: "small" if None; finetune: the image or video recipe
    labels: int | None = None  # only this many labelled training images (None: all)
    overrides: dict[str, Any] = Field(default_factory=dict)  # recipe keys
    label: Literal["motion", "class"] | None = None  # video runs: the label kind (None: the class folders)
    test_clips: int = 2  # video runs: temporal views per test video
    train_subset: int | None = None  # k-NN / probe: a class-balanced subset of the train split (None: all)
    test_subset: int | None = None  # the same for the test split
    # results key -> dotted path into the evaluation's result, e.g. {det_box_ap: box.AP, knn_top1: top1.20}
    figures: dict[str, str]

    @model_validator(mode="after")
    def _check(self) -> "TaskEval":
        if self.task in ("segment", "detect") and self.data_dir is None:
            raise ValueError(f"task {self.name!r}: {self.task} needs data_dir")
        return self


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
    ranking_images: int = 512  # test images for the teacher's ranking quality (0: none)
    ranking_masks: int = 10
    precision: str = "auto"
    # few labels (hpm/study/few_labels.py): every run, and the floors, evaluated again with only
    # this many labelled train images (class-balanced, nested, chosen by `seed` from the whole
    # train split), on labels_test_subset test images (None: the whole test split)
    labels: list[int] = Field(default_factory=list)
    labels_protocols: list[Literal["knn", "linear", "finetune"]] = Field(default_factory=lambda: ["knn", "linear", "finetune"])
    labels_recipe: str = "few_labels"  # the fine-tune recipe (recipe seed = pre-training seed)
    labels_finetune_overrides: dict[str, Any] = Field(default_factory=dict)
    labels_test_subset: int | None = None
    labels_floor_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])  # random-init encoders (init seed)
    # false: no k-NN or linear probe on class labels (pre-training data without image labels)
    classification: bool = True
    # more evaluations (hpm/study/tasks.py): each run, recipe seed = pre-training seed, and
    # random-init encoders of task_floor_seeds (init seed = recipe seed)
    tasks: list[TaskEval] = Field(default_factory=list)
    task_floor_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    tasks_only: list[str] | None = None  # run only these evaluations (by name); the report keeps all

    @model_validator(mode="after")
    def _check_labels(self) -> "StudyEval":
        if any(n < 1 for n in self.labels) or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct positive counts, got {self.labels}")
        names = [d.name for d in self.tasks]
        keys = [k for d in self.tasks for k in d.figures]
        if len(set(names)) != len(names) or len(set(keys)) != len(keys):
            raise ValueError(f"tasks need distinct names and figure keys, got {names} / {keys}")
        unknown = sorted(set(self.tasks_only or []) - set(names))
        if unknown:
            raise ValueError(f"tasks_only names unknown task(s) {unknown}; the study has {names}")
        return self


class BudgetCurve(_Strict):
    """One run evaluated after several epochs of its pre-training, from checkpoints it keeps."""

    variant: str
    seed: int = 0
    epochs: list[int]  # the last one may be the run's own epochs (its final evaluation is reused)
    labels: int  # labelled images of the evaluation (few-label protocol)
    protocols: list[Literal["knn", "linear", "finetune"]] = Field(default_factory=lambda: ["knn", "finetune"])


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
    budget_curve: BudgetCurve | None = None
    # the study file without the overrides that only select work (WORK_SELECTION): what the
    # report is built from, so that a narrowed call never drops a figure of the report
    _report_spec: StudySpec | None = PrivateAttr(default=None)

    @property
    def report_spec(self) -> StudySpec:
        """The spec the report is built from: this one without its work-selecting overrides."""
        return self._report_spec or self

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
        curve = self.budget_curve
        if curve is not None:
            variant = next((v for v in self.variants if v.name == curve.variant), None)
            if variant is None or curve.seed not in variant.seeds:
                raise ValueError(f"budget_curve: {curve.variant!r} has no run of seed {curve.seed}")
            if not curve.epochs or min(curve.epochs) < 1 or len(set(curve.epochs)) != len(curve.epochs):
                raise ValueError(f"budget_curve.epochs must be distinct epochs >= 1, got {curve.epochs}")
            if variant.match_time_of is not None or variant.reuse is not None:
                raise ValueError(f"budget_curve: {curve.variant!r} must be trained by this study at a fixed epoch count")
        return self


# Overrides that choose which work a call does, not what the study is: a call with
# ``eval.labels=[6000] eval.labels_protocols=[finetune]`` runs only those fine-tunes, and the
# report it writes still holds every column of the study file (figures of runs and floors whose
# files are gone included: they live only in the last report).
WORK_SELECTION: dict[str, tuple[str, ...]] = {
    "eval": ("labels", "labels_protocols", "labels_floor_seeds", "tasks_only", "task_floor_seeds"),
    "budget_curve": (),  # the whole section
}


def _without_work_selection(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` less the keys of WORK_SELECTION."""
    out = copy.deepcopy(overrides)
    for section, keys in WORK_SELECTION.items():
        if section not in out:
            continue
        if not keys or not isinstance(out[section], dict):
            del out[section]
            continue
        for key in keys:
            out[section].pop(key, None)
        if not out[section]:
            del out[section]
    return out


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` (nested dict) are merged on top. Overrides
    that only select work (WORK_SELECTION) narrow the work, not the report (``report_spec``)."""
    spec = _load_study(path, overrides)
    if overrides:
        kept = _without_work_selection(overrides)
        if kept != overrides:
            spec._report_spec = _load_study(path, kept)
    return spec


def _load_study(path: str | Path, overrides: dict[str, Any] | None) -> StudySpec:
    """The study file with ``overrides`` merged on top, validated and resolved."""
    raw = _deep_merge(load_yaml_mapping(path, "study file", hint=" (see configs/study/)"), overrides or {})
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'study'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid study file {Path(path)}:\n  " + "\n  ".join(lines)) from None
    for v in spec.variants:  # fail before any work if a variant's config does not resolve
        variant_config(spec, v, v.seeds[0] if v.seeds else 0)
    _check_resolved(spec)
    return spec


def _check_resolved(spec: StudySpec) -> None:
    """What needs the resolved configs: the few-label recipe and the budget curve's epochs."""
    if spec.eval.labels and "finetune" in spec.eval.labels_protocols:
        from hpm.eval.recipes import build_finetune_config

        try:
            build_finetune_config(spec.eval.labels_recipe, overrides=spec.eval.labels_finetune_overrides)
        except ConfigError as exc:
            raise ConfigError(f"eval.labels_recipe / labels_finetune_overrides: {exc}") from None
    if spec.eval.tasks:
        video = variant_config(spec, spec.variants[0], 0).model.num_frames is not None
        for task in spec.eval.tasks:
            _check_task(task, video)
    curve = spec.budget_curve
    if curve is not None:
        variant = next(v for v in spec.variants if v.name == curve.variant)
        epochs = variant_config(spec, variant, curve.seed).train.epochs
        if max(curve.epochs) > epochs:
            raise ConfigError(f"budget_curve.epochs {curve.epochs} go beyond the {epochs} epochs of {curve.variant!r}")


def task_finetune_config(task: TaskEval, video: bool, seed: int | None = None) -> Any:
    """A fine-tune task's recipe (video recipes for a video run: ``video_small`` if none is named;
    image recipes: ``reference``), its overrides and the recipe ``seed``."""
    overrides = {**task.overrides, **({} if seed is None else {"seed": seed})}
    if video:
        from hpm.eval.video.recipes import build_video_finetune_config

        return build_video_finetune_config(task.recipe, overrides=overrides)
    from hpm.eval.recipes import build_finetune_config

    return build_finetune_config(task.recipe or "reference", overrides=overrides)


def check_task_data(spec: StudySpec) -> None:
    """Every task's data folder exists (checked when a study starts, before any work).

    Raises:
        ConfigError: A missing folder, named with the command that writes it.
    """
    for task in spec.eval.tasks:
        if task.data_dir is not None and not Path(task.data_dir).is_dir():
            hint = "hpm data scenes" if task.task in ("segment", "detect") else "hpm data moving"
            raise ConfigError(f"eval.tasks {task.name!r}: data_dir {task.data_dir} does not exist; write the data "
                              f"with `{hint} {task.data_dir}` or point data_dir at your data")


def _check_task(task: TaskEval, video: bool) -> None:
    """A task's recipe and overrides resolve (a fine-tune's: the video recipes for a video study)."""
    if task.task == "segment":
        from hpm.eval.segment.recipes import build_segment_config

        build = lambda: build_segment_config(task.recipe or "small", overrides=task.overrides)  # noqa: E731
    elif task.task == "detect":
        from hpm.eval.detect.recipes import build_detect_config

        build = lambda: build_detect_config(task.recipe or "small", overrides=task.overrides)  # noqa: E731
    elif task.task == "finetune":
        build = lambda: task_finetune_config(task, video)  # noqa: E731
    else:
        build = lambda: None  # noqa: E731 - k-NN and probe have no recipe
    try:
        build()
    except ConfigError as exc:
        raise ConfigError(f"eval.tasks {task.name!r}: {exc}") from None


def parse_study_overrides(items: list[str]) -> dict[str, Any]:
    """``["base.train.epochs=5", "runs_dir=runs/x"]`` -> nested dict (YAML-typed values)."""
    from hpm.config import parse_overrides

    return parse_overrides(items)


def variant_config(spec: StudySpec, variant: VariantSpec, seed: int, epochs: int | None = None) -> Config:
    """The resolved pre-training config of one run: base, then the variant's file, overrides, seed."""
    raw = copy.deepcopy(spec.base)
    if variant.config is not None:
        # a malformed file's error starts with FILE:LINE:COLUMN, as an editor wants it
        raw = _deep_merge(raw, load_yaml_mapping(variant.config, f"variant {variant.name!r}: config file", "sections"))
    raw = _deep_merge(raw, variant.overrides)
    raw = _deep_merge(raw, {"train": {"seed": seed}, "output_dir": str(run_dir(spec, variant.name, seed))})
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    curve = spec.budget_curve
    if curve is not None and (curve.variant, curve.seed) == (variant.name, seed):
        final = int(raw["train"].get("epochs", Config().train.epochs))
        kept = sorted(e for e in curve.epochs if e < final)  # the checkpoints the curve is evaluated on
        if kept:
            raw["train"]["keep_epochs"] = kept
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
