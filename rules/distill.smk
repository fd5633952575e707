# Sequence-level distillation data: each distilling teacher's CT2 beam search over the training
# source in parallel chunks (scatter / gather), Seq-KD targets (top hypothesis) and Seq-Inter
# targets (the n-best candidate closest to the reference) and the 2-best as pairs, under
# distill/<teacher>/.


rule split_distill_source:
    input:
        f"{RESULTS}/data/clean/train.{SRC}",
    output:
        # chunk files are intermediates: removed once the gathered outputs exist
        temp(scatter.distill(f"{RESULTS}/distill/chunks/{{scatteritem}}.{SRC}")),
    log:
        f"{LOGS}/split_distill_source.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "nmtkd split --input {input:q} --outputs {output:q} > {log:q} 2>&1"


rule distill_chunk:
    input:
        unpack(distill_decoder),
        src=f"{RESULTS}/distill/chunks/{{scatteritem}}.{SRC}",
    output:
        best=temp(f"{RESULTS}/distill/{{teacher}}/chunks/{{scatteritem}}.{TGT}"),
        nbest=temp(f"{RESULTS}/distill/{{teacher}}/chunks/{{scatteritem}}.nbest.tsv"),
    params:
        beam=DISTILL["beam_size"],
        nbest=DISTILL["nbest"],
        batch_size=DISTILL["batch_size"],
        max_length=DISTILL["max_length"],
        inter_threads=DISTILL["inter_threads"],
        decoder=distill_decoder_arguments,
        bound=quoted_args(PLAN.length_bound_arguments()),
    log:
        f"{LOGS}/distill_chunk/{{teacher}}/{{scatteritem}}.log",
    benchmark:
        f"{BENCHMARKS}/distill_chunk/{{teacher}}/{{scatteritem}}.tsv"
    priority: 5  # on the critical path: the Seq-KD students wait for it
    threads: DISTILL["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "nmtkd translate --model {input.model:q} --input {input.src:q} --output {output.best:q}"
        " --nbest-output {output.nbest:q} --beam-size {params.beam} --nbest {params.nbest}"
        " --batch-size {params.batch_size} --max-length {params.max_length} {params.bound}"
        " {params.decoder}"
        " --threads {threads} --inter-threads {params.inter_threads} > {log:q} 2>&1"


rule gather_distilled:
    input:
        # {{teacher}} (doubled braces) stays a wildcard through gather's expand
        best=gather.distill(f"{RESULTS}/distill/{{{{teacher}}}}/chunks/{{scatteritem}}.{TGT}"),
        nbest=gather.distill(
            f"{RESULTS}/distill/{{{{teacher}}}}/chunks/{{scatteritem}}.nbest.tsv"),
        src=f"{RESULTS}/data/clean/train.{SRC}",
    output:
        seqkd=f"{RESULTS}/distill/{{teacher}}/seqkd.{TGT}",
        nbest=f"{RESULTS}/distill/{{teacher}}/nbest.tsv",
    log:
        f"{LOGS}/gather_distilled/{{teacher}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "nmtkd gather --inputs {input.best:q} --output {output.seqkd:q} --expected {input.src:q}"
        " --nbest-inputs {input.nbest:q} --nbest-output {output.nbest:q} > {log:q} 2>&1"


rule select_seqinter:
    input:
        nbest=f"{RESULTS}/distill/{{teacher}}/nbest.tsv",
        ref=f"{RESULTS}/data/clean/train.{TGT}",
    output:
        f"{RESULTS}/distill/{{teacher}}/seqinter.{TGT}",
    params:
        metric=DISTILL["similarity"],
    log:
        f"{LOGS}/select_seqinter/{{teacher}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nmtkd select --nbest {input.nbest:q} --references {input.ref:q} --output {output:q}"
        " --metric {params.metric} > {log:q} 2>&1"


rule expand_nbest:
    input:
        nbest=f"{RESULTS}/distill/{{teacher}}/nbest.tsv",
        src=f"{RESULTS}/data/clean/train.{SRC}",
    output:
        src=f"{RESULTS}/distill/{{teacher}}/best2.{SRC}",
        tgt=f"{RESULTS}/distill/{{teacher}}/best2.{TGT}",
    log:
        f"{LOGS}/expand_nbest/{{teacher}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "nmtkd expand-nbest --nbest {input.nbest:q} --source {input.src:q} --count 2"
        " --out-src {output.src:q} --out-tgt {output.tgt:q} > {log:q} 2>&1"
