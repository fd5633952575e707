# The run's resolved config (schema defaults filled in), saved beside its results. `study`
# only picks what this invocation builds, so it is left out: running another study does not
# make the results of the first out of date.


rule save_config:
    output:
        f"{RESULTS}/config.yaml",
    params:
        config=quoted({key: value for key, value in config.items() if key != "study"}),
    log:
        f"{LOGS}/save_config.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "nmtkd write-config --json {params.config} --output {output:q} > {log:q} 2>&1"
