"""The floors: a random-init encoder and raw pixels under the study's evaluation."""

from __future__ import annotations

import time

from hpm.engine.logger import LOG
from hpm.study.archive import archived_floors, kept_floor_finetunes
from hpm.study.evaluate import finetune_options
from hpm.study.files import floor_dir, floor_finetune_file, write_json
from hpm.study.report import write_report
from hpm.study.spec import StudySpec, variant_config


def run_floors(spec: StudySpec) -> None:
    """Random-init encoder (the base architecture) and raw pixels under the same k-NN and probe."""
    from hpm.eval.data import build_eval_data
    from hpm.eval.knn import run_knn
    from hpm.eval.linear import LinearProbeConfig, run_linear
    from hpm.eval.run import EvalOptions, run_eval
    from hpm.export import export_classifier

    ev = spec.eval
    floors = floor_dir(spec)
    cfg = variant_config(spec, spec.variants[0], 0)
    kept = archived_floors(spec)
    for protocol in (["knn"] + (["linear"] if ev.linear else [])) * ev.classification:
        if all((kept.get(kind) or {}).get(f"{protocol}_top1") is not None for kind in ("random_init", "raw_pixels")) \
                and not any((floors / f"{kind}_{protocol}.json").is_file() for kind in ("random_init", "raw_pixels")):
            continue  # figures kept from the report (the files are gone with an old machine)
        out = floors / f"random_init_{protocol}.json"
        if not out.is_file():
            LOG.info("study %s: random-init floor: %s", spec.name, protocol)
            opts = EvalOptions(random_init=True, cfg=cfg, train_subset=ev.train_subset, test_subset=ev.test_subset,
                               seed=ev.seed, pool=ev.pool, precision=ev.precision, out=out)
            run_eval(protocol, None, opts, export_classifier=export_classifier)  # type: ignore[arg-type]
        out = floors / f"raw_pixels_{protocol}.json"
        if not out.is_file():
            LOG.info("study %s: raw-pixels floor: %s", spec.name, protocol)
            data = build_eval_data(cfg.data, cfg.model.img_size, 1 if cfg.data.dataset == "fashion_mnist" else (cfg.data.channels or 3),
                                   ev.train_subset, ev.test_subset, ev.seed)
            started = time.perf_counter()
            result = run_knn(None, data) if protocol == "knn" else run_linear(None, data, probe_cfg=LinearProbeConfig())
            write_json(out, {"protocol": protocol, "source": {"kind": "raw_pixels"}, "data": data.describe(),
                             "result": result, "seconds": round(time.perf_counter() - started, 3)})


def run_floor_finetunes(spec: StudySpec) -> None:
    """Random-init encoders (init seed = recipe seed = s) fine-tuned with the study's recipe."""
    from hpm.eval.run import run_eval
    from hpm.export import export_classifier

    cfg = variant_config(spec, spec.variants[0], 0)
    kept = kept_floor_finetunes(spec)
    for seed in spec.eval.floor_finetune_seeds:
        out = floor_finetune_file(spec, seed)
        if seed in kept and not out.is_file():
            LOG.info("study %s: random-init floor: fine-tune, seed %d is kept from the report (its file is gone; "
                     "delete it from floors.random_init.finetune_top1.per_seed in results.json to redo it)", spec.name, seed)
        elif not out.is_file():
            LOG.info("study %s: random-init floor: fine-tune, seed %d", spec.name, seed)
            run_eval("finetune", None, finetune_options(spec, seed, out, random_init=True, cfg=cfg, init_seed=seed),
                     export_classifier=export_classifier)
            write_report(spec)  # each seed's figure is in the report as soon as it is there
