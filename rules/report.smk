# Result tables written from the per-model, per-test-set evaluation files.


rule teacher_table:
    input:
        expand(f"{RESULTS}/eval/teacher/{{testset}}.json", testset=TESTSETS),
    output:
        f"{RESULTS}/tables/teacher.md",
    log:
        f"{LOGS}/teacher_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd report --inputs {input} --output {output} > {log} 2>&1"
