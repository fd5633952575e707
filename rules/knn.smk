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
        gpu=lambda wildcards: 1 if PLAN.model(wildcards.knn_model).training["device"] == "cuda"
        else 0,
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


# kNN-MT: the datastore model decoding each test set with retrieval at every step (the torch
# beam search), and its speed against the same model without retrieval. Evaluated by
# evaluate_testset like every other model, as the row `knn_mt` of the studies with knn_mt.


# knn.tune: k, λ and T chosen by BLEU on the validation set, decoded as the test sets are.
rule knn_mt_tune:
    input:
        unpack(lambda wildcards: PLAN.knn_model_inputs()),
        src=f"{RESULTS}/data/raw/valid.{SRC}",
        ref=f"{RESULTS}/data/raw/valid.{TGT}",
    output:
        PLAN.knn_tune_file(),
    params:
        grid=quoted_args(PLAN.knn_tune_arguments()) if PLAN.knn_tuned else "",
        beam_size=EVAL["beam_size"],
        batch_size=EVAL["batch_size"],
        max_length=EVAL["max_length"],
        length_penalty=EVAL["length_penalty"],
        bound=quoted_args(PLAN.length_bound_arguments()),
        tokenize=PLAN.bleu_tokenize,
    log:
        f"{LOGS}/knn_mt_tune/{PLAN.knn_model}.log",
    benchmark:
        f"{BENCHMARKS}/knn_mt_tune/{PLAN.knn_model}.tsv"
    threads: EVAL["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd knn-tune --model {input.model:q} --spm {input.spm:q}"
        " --knn-datastore {input.datastore:q} --knn-index {input.index:q} {params.grid}"
        " --input {input.src:q} --references {input.ref:q} --output {output:q}"
        " --beam-size {params.beam_size} --batch-size {params.batch_size}"
        " --max-length {params.max_length} --length-penalty {params.length_penalty}"
        " {params.bound} --tokenize {params.tokenize} --threads {threads} > {log:q} 2>&1"


rule translate_knn_mt:
    input:
        unpack(lambda wildcards: PLAN.knn_mt_inputs()),
        src=f"{RESULTS}/data/raw/{{testset}}.{SRC}",
    output:
        f"{RESULTS}/translations/{KNN_MT}/{{testset}}.float32.beam{{beam}}.{TGT}",
    params:
        batch_size=EVAL["batch_size"],
        max_length=EVAL["max_length"],
        length_penalty=EVAL["length_penalty"],
        knn=quoted_args(PLAN.knn_decoding_arguments()),
        bound=quoted_args(PLAN.length_bound_arguments()),
    log:
        f"{LOGS}/translate_testset/{KNN_MT}.{{testset}}.float32.beam{{beam}}.log",
    benchmark:
        f"{BENCHMARKS}/translate_testset/{KNN_MT}.{{testset}}.float32.beam{{beam}}.tsv"
    threads: EVAL["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd translate --backend torch --model {input.model:q} --spm {input.spm:q}"
        " --knn-datastore {input.datastore:q} --knn-index {input.index:q} {params.knn}"
        " --input {input.src:q} --output {output:q} --beam-size {wildcards.beam:q}"
        " --batch-size {params.batch_size} --max-length {params.max_length}"
        " --length-penalty {params.length_penalty} {params.bound} --threads {threads}"
        " > {log:q} 2>&1"


rule knn_mt_speed:
    input:
        unpack(lambda wildcards: PLAN.knn_mt_inputs()),
        src=f"{RESULTS}/data/raw/{PLAN.speed_testset}.{SRC}",
    output:
        f"{RESULTS}/speed/{KNN_MT}.json",
    params:
        speed=EVAL["speed"],
        knn=quoted_args(PLAN.knn_decoding_arguments()),
        bound=quoted_args(PLAN.length_bound_arguments()),
    log:
        f"{LOGS}/measure_speed/{KNN_MT}.log",
    benchmark:
        f"{BENCHMARKS}/measure_speed/{KNN_MT}.tsv"
    threads: EVAL["speed"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd knn-speed --model {input.model:q} --spm {input.spm:q}"
        " --knn-datastore {input.datastore:q} --knn-index {input.index:q} {params.knn}"
        " --input {input.src:q} --output {output:q} --repeats {params.speed[repeats]}"
        " --sentences {params.speed[sentences]} --beam-size {params.speed[beam_size]}"
        " --batch-size {params.speed[batch_size]} {params.bound} --threads {threads}"
        " > {log:q} 2>&1"
