"""The evaluations of one finished run: k-NN, linear probe, fine-tune and ranking quality."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from hpm.engine.logger import LOG
from hpm.study.files import eval_file, finetune_file, read_json, write_json
from hpm.study.plan import Job
from hpm.study.spec import StudySpec

# 2: real_retest_spearman and *_masked_avg_* added (figures of version 1 are unchanged)
# 3: teacher_* measure the teacher as configured (mask.teacher_view), teacher_full_* the full-image
#    pass (for a full-view run the same figures as version 2's teacher_*)
# 4: teacher_attention_* (the teacher's [CLS] attention, AttMask's score) and mask_strategy; runs with a
#    teacher and no loss predictor (mask.strategy=attention) are ranked too (figures of version 3 unchanged)
RANKING_VERSION = 4


def finetune_options(spec: StudySpec, seed: int, out: Path, **kwargs: Any) -> Any:
    """Evaluation options of a study fine-tune: the study's recipe with the recipe seed ``seed``."""
    from hpm.eval.finetune import build_finetune_config
    from hpm.eval.run import EvalOptions

    ev = spec.eval
    opts = EvalOptions(seed=ev.seed, pool=ev.pool, precision=ev.precision, out=out, **kwargs)
    opts.finetune = build_finetune_config(ev.finetune_recipe, overrides={**ev.finetune_overrides, "seed": seed})
    return opts


def eval_run(spec: StudySpec, job: Job) -> None:
    """k-NN, linear probe, ranking quality and (for finetune seeds) fine-tuning of one run."""
    from hpm.eval.run import EvalOptions, run_eval
    from hpm.export import export_classifier

    ev = spec.eval
    base = dict(train_subset=ev.train_subset, test_subset=ev.test_subset, seed=ev.seed, pool=ev.pool, precision=ev.precision)
    todo = [("knn", eval_file(job.run_dir, "knn"))] + ([("linear", eval_file(job.run_dir, "linear"))] if ev.linear else [])
    todo = todo if ev.classification else []
    if job.seed in job.variant.finetune_seeds:
        todo.append(("finetune", finetune_file(job.run_dir, ev.finetune_recipe)))
    for protocol, out in todo:
        if out.is_file():
            continue
        opts = finetune_options(spec, job.seed, out) if protocol == "finetune" else EvalOptions(**base, out=out)
        LOG.info("study %s: %s / seed %d: %s", spec.name, job.variant.name, job.seed, protocol)
        run_eval(protocol, job.run_dir, opts, export_classifier=export_classifier)  # type: ignore[arg-type]
    out = eval_file(job.run_dir, "ranking")
    if ev.ranking_images == 0:
        return  # no ranking asked for
    if (read_json(out) or {}).get("version", 1) < RANKING_VERSION:  # missing, or made by older code
        LOG.info("study %s: %s / seed %d: ranking quality", spec.name, job.variant.name, job.seed)
        write_json(out, ranking_eval(spec, job.run_dir))


def ranking_eval(spec: StudySpec, path: Path) -> dict[str, Any]:
    """Teacher / student full-image prediction vs the real loss averaged over random masks."""
    from hpm.eval.patch_loss import load_pretrained, ranking_quality

    models = load_pretrained(path)
    cfg = models.cfg
    if not models.student.has_predictor and models.teacher is None:  # MAE: nothing scores patches
        return {"version": RANKING_VERSION, "available": False}
    imgs = ranking_images(cfg, spec.eval.ranking_images, spec.eval.seed, spec.eval.classification)  # [N, C, H, W]
    started = time.perf_counter()
    result = ranking_quality(models, imgs, spec.eval.ranking_masks, seed=spec.eval.seed)
    return {"version": RANKING_VERSION, "available": True, "images": int(imgs.shape[0]), "masks": spec.eval.ranking_masks,
            "seconds": round(time.perf_counter() - started, 2), **result}


def ranking_images(cfg: Any, n: int, seed: int, labelled: bool) -> Any:
    """``n`` test images of the run's data, evaluation-transformed (``[N, C, H, W]``): a seeded,
    class-balanced subset of a labelled test split, or the first ``n`` of an unlabelled folder's
    validation split (ADE20K's layout, e.g. the scenes)."""
    import torch

    from hpm.data.folder import ImageFolderDataset, Unreadable
    from hpm.data.transforms import build_eval_transform
    from hpm.eval.data import build_eval_data, normalisation

    channels = int(cfg.model.in_chans or 1)
    if labelled:
        data = build_eval_data(cfg.data, cfg.model.img_size, channels, None, n, seed)
        dataset = data.test.with_transform(data.transform())
        return torch.stack([dataset[i][0] for i in range(len(dataset))])
    images = ImageFolderDataset(cfg.data.data_dir, "val", channels)
    transform = build_eval_transform(cfg.model.img_size, *normalisation(cfg.data, channels), cfg.data.fit)
    readable = (x for x in (images[i] for i in range(len(images))) if not isinstance(x, Unreadable))  # bad files: skipped
    return torch.stack([transform(image) for image, _ in itertools.islice(readable, n)])
