# One joint SentencePiece model, trained on a sample of the cleaned data, applied to each split.


rule train_spm:
    input:
        src=f"{RESULTS}/data/clean/train.{SRC}",
        tgt=f"{RESULTS}/data/clean/train.{TGT}",
    output:
        model=f"{RESULTS}/spm/spm.model",
        vocab=f"{RESULTS}/spm/spm.vocab",
    params:
        vocab_size=config["sentencepiece"]["vocab_size"],
        sample_size=config["sentencepiece"]["sample_size"],
        coverage=config["sentencepiece"]["character_coverage"],
        seed=config["sentencepiece"]["seed"],
    log:
        f"{LOGS}/train_spm.log",
    benchmark:
        f"{BENCHMARKS}/train_spm.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd spm-train --inputs {input.src:q} {input.tgt:q} --model {output.model:q}"
        " --vocab-size {params.vocab_size} --sample-size {params.sample_size}"
        " --character-coverage {params.coverage} --seed {params.seed} --threads {threads}"
        " > {log:q} 2>&1"


rule encode_spm:
    input:
        text=encode_input,
        model=PLAN.spm_model(),
    output:
        f"{RESULTS}/data/spm/{{encoded_split}}.{{lang}}",
    log:
        f"{LOGS}/encode_spm/{{encoded_split}}.{{lang}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nmtkd spm-encode --model {input.model:q} --input {input.text:q} --output {output:q}"
        " > {log:q} 2>&1"
