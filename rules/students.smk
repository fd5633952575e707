# Students: each entry of `students` trains one model on its corpus variant (gold, the teacher's
# distilled targets, or a concatenation), with its loss and optionally from another student's
# weights (Seq-Inter fine-tuning). Adding a KD method touches no rule: it is a loss plus a
# config entry.


rule build_student_corpus:
    input:
        unpack(corpus_inputs),
    output:
        src=f"{RESULTS}/data/spm/variants/{{variant}}.{SRC}",
        tgt=f"{RESULTS}/data/spm/variants/{{variant}}.{TGT}",
    params:
        args=corpus_arguments,
    log:
        f"{LOGS}/build_student_corpus/{{variant}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nmtkd corpus {params.args} --source {input.source:q} --spm {input.spm:q}"
        " --out-src {output.src:q} --out-tgt {output.tgt:q} > {log:q} 2>&1"


rule train_student:
    input:
        unpack(student_inputs),
    output:
        model=f"{RESULTS}/models/{{student}}/model.pt",
        summary=f"{RESULTS}/models/{{student}}/training.json",
    params:
        settings=student_settings,
        optional=student_optional_arguments,
        workdir=f"{RESULTS}/models/{{student}}/work",
        processes=student_processes,
    log:
        f"{LOGS}/train_student/{{student}}.log",
    benchmark:
        f"{BENCHMARKS}/train_student/{{student}}.tsv"
    threads: student_resource("threads")
    resources:
        mem_mb=student_resource("mem_mb"),
        runtime=student_resource("runtime"),
        gpu=student_gpus,
    shell:
        "nmtkd train --train-src {input.train_src:q} --train-tgt {input.train_tgt:q}"
        " --valid-src {input.valid_src:q} --valid-tgt {input.valid_tgt:q}"
        " --valid-ref {input.valid_ref:q} --spm {input.spm:q} --settings {params.settings}"
        " {params.optional} --workdir {params.workdir:q} --output {output.model:q}"
        " --summary {output.summary:q} --threads {threads} --nproc-per-node {params.processes}"
        " --gpus {resources.gpu} >> {log:q} 2>&1"
