# Result tables written from the per-model, per-test-set evaluation files: the primary
# teacher's table, and the comparison of every model.


rule teacher_table:
    input:
        expand(f"{RESULTS}/eval/{PLAN.teacher.name}/{{testset}}.float32.beam{BEAM}.json",
               testset=TESTSETS),
    output:
        f"{RESULTS}/tables/teacher.md",
    log:
        f"{LOGS}/teacher_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd report --inputs {input:q} --output {output:q} > {log:q} 2>&1"


# The tables are read from the plan of the run's saved config (no manifest on the command
# line, whose length the OS bounds).
rule comparison_tables:
    input:
        results=PLAN.comparison_inputs(),
        config=f"{RESULTS}/config.yaml",
    output:
        md=f"{RESULTS}/tables/comparison.md",
        csv=f"{RESULTS}/tables/comparison.csv",
        tex=f"{RESULTS}/tables/comparison.tex",
    log:
        f"{LOGS}/comparison_tables.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd compare --config {input.config:q} --markdown {output.md:q} --csv {output.csv:q}"
        " --latex {output.tex:q} > {log:q} 2>&1"
