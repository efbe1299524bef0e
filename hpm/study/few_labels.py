"""The few-label evaluation of a study (``eval.labels``): every run and the floors again, with
only N labelled training images.

For each label count N of ``eval.labels`` and each protocol of ``eval.labels_protocols``, a run's
encoder is evaluated with N class-balanced, nested labelled images of the whole train split
(chosen by ``eval.seed``: the same images for every run and floor) on ``eval.labels_test_subset``
test images (None: the whole test split): k-NN, linear probe, and a fine-tune with
``eval.labels_recipe`` (recipe seed = pre-training seed). The floors on the same labels: random-init
encoders (init seed = recipe seed, ``eval.labels_floor_seeds``) under all protocols and raw pixels
under k-NN and the probe. Each result is a file (``eval/study_knn_l600.json``, ...), so a re-run
continues; figures of files that are gone are kept from the last report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpm.engine.logger import LOG
from hpm.study.archive import archived_floors
from hpm.study.files import eval_file, floor_dir, result
from hpm.study.plan import Job
from hpm.study.spec import StudySpec, variant_config

if TYPE_CHECKING:
    from hpm.eval.run import EvalOptions

PROTOCOL_ORDER = ("knn", "linear", "finetune")
PIXEL_PROTOCOLS = ("knn", "linear")  # raw pixels have nothing to fine-tune


def label_key(protocol: str, n: int) -> str:
    """The results key of a protocol's top-1 at ``n`` labels: ``knn_top1_l600``."""
    return f"{protocol}_top1_l{n}"


def label_columns(spec: StudySpec) -> list[tuple[str, str, int]]:
    """Every few-label figure of the study as ``(key, protocol, labels)``, by label count then protocol."""
    protocols = [p for p in PROTOCOL_ORDER if p in spec.eval.labels_protocols]
    return [(label_key(p, n), p, n) for n in spec.eval.labels for p in protocols]


def label_name(spec: StudySpec, protocol: str, n: int) -> str:
    """The name of a few-label result: ``knn_l600``, ``finetune_few_labels_l600``."""
    recipe = f"finetune_{spec.eval.labels_recipe}" if protocol == "finetune" else protocol
    return f"{recipe}_l{n}"


def top1_of(spec: StudySpec, path: Path, protocol: str) -> float | None:
    """The top-1 of a result file (k-NN: at the study's k); None if there is no file."""
    keys = ("top1", str(spec.eval.knn_k)) if protocol == "knn" else ("top1",)
    return result(path, *keys)


def label_file(spec: StudySpec, d: Path, protocol: str, n: int) -> Path:
    """A run's few-label result (a fine-tune's checkpoints: the same path without .json)."""
    return eval_file(d, label_name(spec, protocol, n))


def floor_label_file(spec: StudySpec, kind: str, protocol: str, n: int, seed: int | None = None) -> Path:
    """A floor's few-label result: ``random_init`` (one per init seed) or ``raw_pixels``."""
    suffix = "" if seed is None else f"_seed_{seed}"
    return floor_dir(spec) / f"{kind}_{label_name(spec, protocol, n)}{suffix}.json"


def label_options(spec: StudySpec, protocol: str, n: int, out: Path, recipe_seed: int, **kwargs: Any) -> EvalOptions:
    """The evaluation options of a few-label result (``kwargs``: e.g. ``random_init``, ``cfg``)."""
    from hpm.eval.finetune import build_finetune_config
    from hpm.eval.run import EvalOptions

    ev = spec.eval
    opts = EvalOptions(labels=n, test_subset=ev.labels_test_subset, seed=ev.seed, pool=ev.pool,
                       precision=ev.precision, out=out, **kwargs)
    if protocol == "finetune":
        overrides = {"test_subset": ev.labels_test_subset, **ev.labels_finetune_overrides, "seed": recipe_seed}
        opts.finetune = build_finetune_config(ev.labels_recipe, overrides=overrides)
    return opts


def evaluate(spec: StudySpec, protocol: str, n: int, source: Path | None, out: Path, recipe_seed: int,
             what: str, **kwargs: Any) -> bool:
    """One few-label result into ``out``; False (nothing done) if it is there already."""
    from hpm.eval.run import run_eval
    from hpm.export import export_classifier

    if out.is_file():
        return False
    LOG.info("study %s: %s: %s at %d labels", spec.name, what, protocol, n)
    run_eval(protocol, source, label_options(spec, protocol, n, out, recipe_seed, **kwargs),
             export_classifier=export_classifier)  # type: ignore[arg-type]
    return True


def eval_run_labels(spec: StudySpec, job: Job) -> None:
    """The few-label results of one finished run."""
    for _, protocol, n in label_columns(spec):
        evaluate(spec, protocol, n, job.run_dir, label_file(spec, job.run_dir, protocol, n), job.seed,
                 f"{job.variant.name} / seed {job.seed}")


def kept_floor_figure(spec: StudySpec, kind: str, key: str, seed: int | None) -> float | None:
    """A floor's few-label figure in the last report (``seed``: its per-seed entry)."""
    cell = (archived_floors(spec).get(kind) or {}).get(key) or {}
    if not isinstance(cell, dict):
        return None
    value = (cell.get("per_seed") or {}).get(str(spec.eval.seed if seed is None else seed))
    return None if value is None else float(value)


def run_label_floors(spec: StudySpec, protocols: tuple[str, ...], after_each: Callable[[], Any] | None = None) -> None:
    """The floors' few-label results under ``protocols``: random init per seed, raw pixels
    (``after_each``: called after each result computed here, e.g. to rewrite the report)."""
    if not spec.eval.labels:
        return
    cfg = variant_config(spec, spec.variants[0], 0)
    for n in spec.eval.labels:
        for protocol in (p for p in protocols if p in spec.eval.labels_protocols):
            todo = [("random_init", s) for s in spec.eval.labels_floor_seeds]
            todo += [("raw_pixels", None)] if protocol in PIXEL_PROTOCOLS else []
            for kind, seed in todo:
                out = floor_label_file(spec, kind, protocol, n, seed)
                if not out.is_file() and kept_floor_figure(spec, kind, label_key(protocol, n), seed) is not None:
                    continue  # kept from the report (the file is gone with an old machine)
                floor = dict(random_init=True, init_seed=seed) if kind == "random_init" else dict(raw_pixels=True)
                what = f"random-init floor, seed {seed}" if kind == "random_init" else "raw-pixels floor"
                if evaluate(spec, protocol, n, None, out, seed or 0, what, cfg=cfg, **floor) and after_each is not None:
                    after_each()
