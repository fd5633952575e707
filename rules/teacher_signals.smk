# Teacher signals: the teacher's top-k logits at every target token of a student corpus,
# teacher-forced, computed once and memory-mapped by every student whose criterion reads them
# (Word-KD with teacher_topk), by each of its DDP processes and by each resume.


rule teacher_signals:
    input:
        unpack(signals_inputs),
    output:
        directory(f"{RESULTS}/signals/{{teacher}}/{{corpus}}.top{{k}}"),
    params:
        max_tokens=config["training"]["max_tokens"],
        device=teacher_device,
    log:
        f"{LOGS}/teacher_signals/{{teacher}}/{{corpus}}.top{{k}}.log",
    benchmark:
        f"{BENCHMARKS}/teacher_signals/{{teacher}}/{{corpus}}.top{{k}}.tsv"
    priority: 5  # on the critical path: the Word-KD students wait for it
    threads: of_model("teacher", "resources", "threads")
    resources:
        mem_mb=of_model("teacher", "resources", "mem_mb"),
        runtime=of_model("teacher", "resources", "runtime"),
        gpu=teacher_gpu,
    shell:
        "nmtkd teacher-signals --model {input.model:q} --train-src {input.train_src:q}"
        " --train-tgt {input.train_tgt:q} --spm {input.spm:q} --k {wildcards.k}"
        " --max-tokens {params.max_tokens} --device {params.device} --threads {threads}"
        " --output {output:q} > {log:q} 2>&1"
