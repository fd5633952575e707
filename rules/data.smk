# Corpus import (local path, URL through the mirror, sacreBLEU) and training-data cleaning.


rule fetch_dataset:
    output:
        src=f"{RESULTS}/data/raw/{{split}}.{SRC}",
        tgt=f"{RESULTS}/data/raw/{{split}}.{TGT}",
    params:
        args=fetch_arguments,
    log:
        f"{LOGS}/fetch_dataset/{{split}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "nmtkd fetch {params.args} --out-src {output.src:q} --out-tgt {output.tgt:q} > {log:q} 2>&1"


rule clean_train:
    input:
        src=f"{RESULTS}/data/raw/train.{SRC}",
        tgt=f"{RESULTS}/data/raw/train.{TGT}",
    output:
        src=f"{RESULTS}/data/clean/train.{SRC}",
        tgt=f"{RESULTS}/data/clean/train.{TGT}",
        report=f"{RESULTS}/data/clean/train.report.json",
    params:
        max_tokens=config["cleaning"]["max_tokens"],
        max_ratio=config["cleaning"]["max_length_ratio"],
        flags=quoted_args(PLAN.cleaning_flags()),
    log:
        f"{LOGS}/clean_train.log",
    benchmark:
        f"{BENCHMARKS}/clean_train.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "nmtkd clean --src {input.src:q} --tgt {input.tgt:q} --out-src {output.src:q}"
        " --out-tgt {output.tgt:q} --report {output.report:q} --max-tokens {params.max_tokens}"
        " --max-ratio {params.max_ratio} {params.flags} > {log:q} 2>&1"
