# The teacher: a Transformer trained on the cleaned gold data. Resumes after a kill (the log
# is appended to, so it keeps the interrupted attempts too).


rule train_teacher:
    input:
        train_src=f"{RESULTS}/data/spm/train.{SRC}",
        train_tgt=f"{RESULTS}/data/spm/train.{TGT}",
        valid_src=f"{RESULTS}/data/spm/valid.{SRC}",
        valid_tgt=f"{RESULTS}/data/spm/valid.{TGT}",
        valid_ref=f"{RESULTS}/data/raw/valid.{TGT}",
        spm=PLAN.spm_model(),
    output:
        model=f"{RESULTS}/models/teacher/model.pt",
        summary=f"{RESULTS}/models/teacher/training.json",
    params:
        settings=quoted(PLAN.train_settings(TEACHER)),
        workdir=f"{RESULTS}/models/teacher/work",
        processes=PLAN.teacher.processes,
    log:
        f"{LOGS}/train_teacher.log",
    benchmark:
        f"{BENCHMARKS}/train_teacher.tsv"
    # everything distilled waits for the teacher: start it before any gold-data student
    priority: 10
    threads: resource(TEACHER, "threads")
    resources:
        mem_mb=resource(TEACHER, "mem_mb"),
        runtime=resource(TEACHER, "runtime"),
        gpu=PLAN.teacher.gpus,
    shell:
        "nmtkd train --train-src {input.train_src:q} --train-tgt {input.train_tgt:q}"
        " --valid-src {input.valid_src:q} --valid-tgt {input.valid_tgt:q}"
        " --valid-ref {input.valid_ref:q} --spm {input.spm:q} --settings {params.settings}"
        " --workdir {params.workdir:q} --output {output.model:q} --summary {output.summary:q}"
        " --threads {threads} --nproc-per-node {params.processes}"
        " --gpus {resources.gpu} >> {log:q} 2>&1"
