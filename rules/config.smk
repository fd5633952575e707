# The run's resolved config (schema defaults filled in), saved beside its results.


rule save_config:
    output:
        f"{RESULTS}/config.yaml",
    params:
        config=quoted(config),
    log:
        f"{LOGS}/save_config.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "nmtkd write-config --json {params.config} --output {output:q} > {log:q} 2>&1"
