# Export of a trained model to a self-contained CTranslate2 directory (one per quantization).


rule export_ct2:
    input:
        model=torch_checkpoint,
        spm=PLAN.spm_model(),
    output:
        directory(f"{RESULTS}/models/{{model}}/ct2_{{quant}}"),
    log:
        f"{LOGS}/export_ct2/{{model}}.{{quant}}.log",
    threads: 1
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=30,
    shell:
        "nmtkd export --checkpoint {input.model:q} --spm {input.spm:q} --output {output:q}"
        " --quantization {wildcards.quant:q} > {log:q} 2>&1"
