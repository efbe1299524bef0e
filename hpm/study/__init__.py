"""``hpm study CONFIG``: pre-train several variants x seeds on the same data, evaluate, report.

A study file (YAML, see ``configs/study/``) names a ``base`` pre-training config shared by all
variants, the variants (an ablation YAML and/or overrides, and their seeds) and what to measure.
Every run lives in ``runs_dir/<variant>/seed_<s>/`` and every finished piece of work leaves a
file there, so re-running the command continues where it stopped: an interrupted pre-training
resumes from its last checkpoint, finished runs and evaluations are not redone. The report
(``results.json``, ``results.md`` and ``curves.png`` in ``report_dir``) is rewritten from
whatever has finished after every job (``--report-only`` rebuilds it without training).

One concept per module: ``spec`` (the study file), ``plan`` (the runs, in order), ``pretrain``
(one run and its summary), ``evaluate`` (a run's k-NN, probe, fine-tune, ranking), ``floors``
(random init, raw pixels), ``few_labels`` and ``budget`` (the few-label evaluation and the budget
curve), ``files`` and ``archive`` (the files work leaves, the figures kept from the last report),
``collect`` / ``few_labels_collect`` (the results), ``report`` / ``few_labels_report`` / ``cells``
(the Markdown), ``run`` (the whole study).
"""

from hpm.study.collect import collect, seed_differences
from hpm.study.evaluate import RANKING_VERSION, ranking_eval
from hpm.study.plan import Job, plan
from hpm.study.report import format_report, write_report
from hpm.study.run import finish_report, run_study
from hpm.study.spec import (
    BudgetCurve,
    StudyEval,
    StudySpec,
    VariantSpec,
    load_study,
    parse_study_overrides,
    run_dir,
    variant_config,
)

__all__ = ["StudySpec", "VariantSpec", "load_study", "plan", "run_study", "collect", "format_report",
           "write_report", "finish_report", "variant_config", "ranking_eval", "seed_differences", "parse_study_overrides", "run_dir",
           "Job", "StudyEval", "BudgetCurve", "RANKING_VERSION"]
