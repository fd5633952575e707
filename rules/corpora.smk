# Student corpora: (source, target) file pairs (gold, a teacher's distilled targets, ...),
# concatenated and encoded for training. Students themselves train with `train_model` (rules/train.smk); adding a KD method
# touches no rule: it is a criterion plus a config entry.


rule build_student_corpus:
    input:
        unpack(corpus_inputs),
    output:
        src=f"{RESULTS}/data/spm/variants/{{corpus}}.{SRC}",
        tgt=f"{RESULTS}/data/spm/variants/{{corpus}}.{TGT}",
    log:
        f"{LOGS}/build_student_corpus/{{corpus}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nmtkd corpus --sources {input.sources:q} --targets {input.targets:q}"
        " --spm {input.spm:q} --out-src {output.src:q} --out-tgt {output.tgt:q} > {log:q} 2>&1"
