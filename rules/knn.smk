# Nearest-neighbour knowledge: a datastore of one model's decoder states (keys) and gold next
# tokens (values) over a training corpus, its faiss index, and for kNN-KD students every
# training token's neighbours, searched once in advance (knn.targets).


rule knn_datastore:
    input:
        unpack(datastore_inputs),
    output:
        directory(f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/datastore"),
    params:
        state=config["knn"]["state"],
        max_tokens=config["training"]["max_tokens"],
        device=lambda wildcards: PLAN.model(wildcards.knn_model).training["device"],
    log:
        f"{LOGS}/knn_datastore/{{knn_model}}/{{corpus}}.log",
    benchmark:
        f"{BENCHMARKS}/knn_datastore/{{knn_model}}/{{corpus}}.tsv"
    threads: of_model("knn_model", "resources", "threads")
    resources:
        mem_mb=of_model("knn_model", "resources", "mem_mb"),
        runtime=of_model("knn_model", "resources", "runtime"),
    shell:
        "nmtkd datastore --model {input.model:q} --train-src {input.train_src:q}"
        " --train-tgt {input.train_tgt:q} --spm {input.spm:q} --state {params.state}"
        " --max-tokens {params.max_tokens} --device {params.device} --threads {threads}"
        " --output {output:q} > {log:q} 2>&1"


rule knn_index:
    input:
        f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/datastore",
    output:
        directory(f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/index"),
    params:
        settings=quoted_args(PLAN.knn_index_arguments()),
    log:
        f"{LOGS}/knn_index/{{knn_model}}/{{corpus}}.log",
    benchmark:
        f"{BENCHMARKS}/knn_index/{{knn_model}}/{{corpus}}.tsv"
    threads: config["knn"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd knn-index --datastore {input:q} {params.settings} --threads {threads}"
        " --output {output:q} > {log:q} 2>&1"


rule knn_targets:
    input:
        datastore=f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/datastore",
        index=f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/index",
    output:
        directory(f"{RESULTS}/knn/{{knn_model}}/{{corpus}}/{{targets}}"),
    params:
        arguments=quoted_args(PLAN.knn_targets_arguments()),
    log:
        f"{LOGS}/knn_targets/{{knn_model}}/{{corpus}}.{{targets}}.log",
    benchmark:
        f"{BENCHMARKS}/knn_targets/{{knn_model}}/{{corpus}}.{{targets}}.tsv"
    priority: 5  # on the critical path: the kNN-KD students wait for it
    threads: config["knn"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd knn-targets --datastore {input.datastore:q} --index {input.index:q}"
        " {params.arguments} --threads {threads} --output {output:q} > {log:q} 2>&1"
