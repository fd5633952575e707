# Evaluation of every model (teacher and students): greedy (K=1) and beam (K=beam_size)
# decoding of each test set in float32 (CTranslate2, or the torch beam search with
# evaluation.backend: torch), beam decoding in int8 (CTranslate2), sacreBLEU scores, CTranslate2
# decoding speed, and Top-1 Agreement with the model's teacher.


rule translate_testset:
    input:
        unpack(evaluation_decoder),
        src=f"{RESULTS}/data/raw/{{testset}}.{SRC}",
    output:
        f"{RESULTS}/translations/{{model}}/{{testset}}.{{quant}}.beam{{beam}}.{TGT}",
    wildcard_constraints:
        model=alternatives(MODELS),  # kNN-MT's translations come from translate_knn_mt
    params:
        batch_size=EVAL["batch_size"],
        max_length=EVAL["max_length"],
        length_penalty=EVAL["length_penalty"],
        inter_threads=EVAL["inter_threads"],
        decoder=evaluation_decoder_arguments,
        bound=quoted_args(PLAN.length_bound_arguments()),
    log:
        f"{LOGS}/translate_testset/{{model}}.{{testset}}.{{quant}}.beam{{beam}}.log",
    benchmark:
        f"{BENCHMARKS}/translate_testset/{{model}}.{{testset}}.{{quant}}.beam{{beam}}.tsv"
    threads: EVAL["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd translate --model {input.model:q} --input {input.src:q} --output {output:q}"
        " --beam-size {wildcards.beam:q} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --length-penalty {params.length_penalty}"
        " {params.decoder} {params.bound} --threads {threads}"
        " --inter-threads {params.inter_threads}"
        " > {log:q} 2>&1"


rule evaluate_testset:
    input:
        hyp=f"{RESULTS}/translations/{{model}}/{{testset}}.{{quant}}.beam{{beam}}.{TGT}",
        ref=f"{RESULTS}/data/raw/{{testset}}.{TGT}",
        src=f"{RESULTS}/data/raw/{{testset}}.{SRC}",
    output:
        f"{RESULTS}/eval/{{model}}/{{testset}}.{{quant}}.beam{{beam}}.json",
    params:
        metadata=evaluation_metadata,
        scoring=quoted_args(PLAN.scoring_arguments()),
    log:
        f"{LOGS}/evaluate_testset/{{model}}.{{testset}}.{{quant}}.beam{{beam}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "nmtkd evaluate --hypotheses {input.hyp:q} --references {input.ref:q}"
        " --source {input.src:q} --output {output:q}"
        " --model-name {wildcards.model:q} --testset {wildcards.testset:q}"
        " --metadata {params.metadata} {params.scoring} > {log:q} 2>&1"


# A study's models of one preset (architecture) and quantization are timed in one job,
# interleaved, on the same sentences: their differences are the models', not the machine's
# moods. Threads are fixed by config; on a machine with as many cores as
# `evaluation.speed.threads`, no other job runs beside a measurement.
rule measure_speed:
    input:
        models=speed_inputs,
        src=f"{RESULTS}/data/raw/{SPEED_TESTSET}.{SRC}",
    output:
        f"{RESULTS}/speed/{{study}}/{{preset}}.{{quant}}.json",
    params:
        models=lambda wildcards: quoted(speed_models(wildcards)),
        beam=SPEED["beam_size"],
        batch_size=SPEED["batch_size"],
        inter_threads=SPEED["inter_threads"],
        repeats=SPEED["repeats"],
        sentences=SPEED["sentences"],
        max_length=EVAL["max_length"],
        bound=quoted_args(PLAN.length_bound_arguments()),
    log:
        f"{LOGS}/measure_speed/{{study}}/{{preset}}.{{quant}}.log",
    benchmark:
        f"{BENCHMARKS}/measure_speed/{{study}}/{{preset}}.{{quant}}.tsv"
    threads: SPEED["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd speed --models {params.models} --input {input.src:q} --output {output:q}"
        " --beam-size {params.beam} --batch-size {params.batch_size}"
        " --max-length {params.max_length} {params.bound}"
        " --threads {threads} --inter-threads {params.inter_threads}"
        " --repeats {params.repeats} --sentences {params.sentences} > {log:q} 2>&1"


rule top1_agreement:
    input:
        model=torch_checkpoint,
        teacher=reference_teacher_checkpoint,
        spm=PLAN.spm_model(),
        src=f"{RESULTS}/data/raw/{{testset}}.{SRC}",
        ref=f"{RESULTS}/data/raw/{{testset}}.{TGT}",
    output:
        f"{RESULTS}/eval/{{model}}/{{testset}}.agreement.json",
    params:
        # the version of `nmtkd agreement`'s JSON: raising it reruns results of an older
        # nmtkd (version 2 added top1_reference), which Snakemake cannot tell apart otherwise
        result_format=2,
    log:
        f"{LOGS}/top1_agreement/{{model}}.{{testset}}.log",
    benchmark:
        f"{BENCHMARKS}/top1_agreement/{{model}}.{{testset}}.tsv"
    threads: 1
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd agreement --model {input.model:q} --teacher {input.teacher:q} --spm {input.spm:q}"
        " --src {input.src:q} --ref {input.ref:q} --output {output:q} --threads {threads}"
        " > {log:q} 2>&1"


# The first teacher on its own (cleaned) training data: how often its top-1 is the reference
# token, the knowledge Word-KD passes on (tables/teacher.md).
rule teacher_train_agreement:
    input:
        model=PLAN.torch_checkpoint(PLAN.teacher.name),
        spm=PLAN.spm_model(),
        src=f"{RESULTS}/data/clean/train.{SRC}",
        ref=f"{RESULTS}/data/clean/train.{TGT}",
    output:
        f"{RESULTS}/eval/{PLAN.teacher.name}/train.agreement.json",
    log:
        f"{LOGS}/top1_agreement/{PLAN.teacher.name}.train.log",
    benchmark:
        f"{BENCHMARKS}/top1_agreement/{PLAN.teacher.name}.train.tsv"
    threads: 1
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd agreement --model {input.model:q} --teacher {input.model:q} --spm {input.spm:q}"
        " --src {input.src:q} --ref {input.ref:q} --output {output:q} --threads {threads}"
        " > {log:q} 2>&1"


# Every student of a study against the study's baseline student on each test set: paired
# bootstrap and approximate randomisation (K=beam float32 outputs; a student's seeds pooled).
rule significance:
    input:
        unpack(significance_inputs),
    output:
        f"{RESULTS}/eval/{{student}}/{{testset}}.vs_{{baseline}}.significance.json",
    params:
        bootstrap=EVAL["significance"]["bootstrap_samples"],
        ar=EVAL["significance"]["ar_trials"],
        metadata=significance_metadata,
        scoring=quoted_args(PLAN.scoring_arguments()),
    log:
        f"{LOGS}/significance/{{student}}.{{testset}}.vs_{{baseline}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "nmtkd significance --system {input.system:q} --baseline {input.baseline:q}"
        " --references {input.references:q} --output {output:q}"
        " --bootstrap-samples {params.bootstrap} --ar-trials {params.ar}"
        " --metadata {params.metadata} {params.scoring} > {log:q} 2>&1"
