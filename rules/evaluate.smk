# Beam search over each test set with CTranslate2, then sacreBLEU scores per model and test set.


rule translate_testset:
    input:
        model=ct2_float32_model,
        src=f"{RESULTS}/data/raw/{{testset}}.{SRC}",
    output:
        f"{RESULTS}/translations/{{model}}/{{testset}}.beam{BEAM}.{TGT}",
    params:
        beam=BEAM,
        batch_size=EVAL["batch_size"],
        max_length=EVAL["max_length"],
        length_penalty=EVAL["length_penalty"],
        inter_threads=EVAL["inter_threads"],
    log:
        f"{LOGS}/translate_testset/{{model}}.{{testset}}.log",
    benchmark:
        f"{BENCHMARKS}/translate_testset/{{model}}.{{testset}}.tsv"
    threads: EVAL["threads"]
    resources:
        mem_mb=default_resource("mem_mb"),
        runtime=default_resource("runtime"),
    shell:
        "nmtkd translate --model {input.model} --input {input.src} --output {output}"
        " --beam-size {params.beam} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --length-penalty {params.length_penalty}"
        " --threads {threads} --inter-threads {params.inter_threads} > {log} 2>&1"


rule evaluate_testset:
    input:
        hyp=f"{RESULTS}/translations/{{model}}/{{testset}}.beam{BEAM}.{TGT}",
        ref=f"{RESULTS}/data/raw/{{testset}}.{TGT}",
    output:
        f"{RESULTS}/eval/{{model}}/{{testset}}.json",
    params:
        metadata=quoted_json({"decoding": f"CTranslate2 beam {BEAM}", "compute_type": "float32"}),
    log:
        f"{LOGS}/evaluate_testset/{{model}}.{{testset}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "nmtkd evaluate --hypotheses {input.hyp} --references {input.ref} --output {output}"
        " --model-name {wildcards.model} --testset {wildcards.testset}"
        " --metadata {params.metadata} > {log} 2>&1"
