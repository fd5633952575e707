# Training: one rule for every model, teachers and students. Each trains on its corpus with its
# criterion, gets what the criterion needs (the teacher's checkpoint or its signals) and its
# initial weights if it fine-tunes, and resumes after a kill (the log is appended to, so it
# keeps the interrupted attempts too).


rule train_model:
    input:
        unpack(training_inputs),
    output:
        model=f"{RESULTS}/models/{{model}}/model.pt",
        summary=f"{RESULTS}/models/{{model}}/training.json",
    params:
        settings=train_settings,
        optional=optional_training_arguments,
        workdir=f"{RESULTS}/models/{{model}}/work",
        processes=model_processes,
    log:
        f"{LOGS}/train_model/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/train_model/{{model}}.tsv"
    # everything distilled waits for the teachers: start them before any gold-data student
    priority: training_priority
    threads: of_model("model", "resources", "threads")
    resources:
        mem_mb=of_model("model", "resources", "mem_mb"),
        runtime=of_model("model", "resources", "runtime"),
        gpu=model_gpus,
    shell:
        "nmtkd train --train-src {input.train_src:q} --train-tgt {input.train_tgt:q}"
        " --valid-src {input.valid_src:q} --valid-tgt {input.valid_tgt:q}"
        " --valid-ref {input.valid_ref:q} --spm {input.spm:q} --settings {params.settings}"
        " {params.optional} --workdir {params.workdir:q} --output {output.model:q}"
        " --summary {output.summary:q} --threads {threads} --nproc-per-node {params.processes}"
        " --gpus {resources.gpu} >> {log:q} 2>&1"
