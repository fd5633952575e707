# nmtkd: knowledge distillation for neural machine translation.
# This file is the table of contents; each stage lives in rules/<stage>.smk.
from snakemake.utils import min_version

min_version("9.0")


# `snakemake --report report.html`: the tables and plots, with this description on top
report: "docs/report/workflow.rst"


# config.yaml, then any --configfile on top (read and checked in rules/common.smk)
include: "rules/common.smk"


# the number of parallel decoding jobs that distil the training set
scattergather:
    distill=config.get("distill", {}).get("chunks", 4),


# Rules that take seconds run in the Snakemake process itself, not as cluster jobs.
localrules:
    all,
    save_config,
    split_distill_source,
    gather_distilled,
    expand_nbest,
    evaluate_testset,
    significance,
    teacher_table,
    comparison_tables,
    plots,
    selection_plot,


include: "rules/config.smk"
include: "rules/data.smk"
include: "rules/spm.smk"
include: "rules/train.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/distill.smk"
include: "rules/teacher_signals.smk"
include: "rules/knn.smk"
include: "rules/corpora.smk"
include: "rules/report.smk"


rule all:
    input:
        f"{RESULTS}/config.yaml",
        f"{RESULTS}/tables/teacher.md",
        PLAN.report_targets(),  # each selected study's tables and plots
        PLAN.teacher_exports(),
    default_target: True
