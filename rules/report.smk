# Result tables written from the per-model, per-test-set evaluation files: the primary
# teacher's table, the comparison of every model, and its plots. The tables' HTML page and the
# PNG plots go into `snakemake --report report.html` with the captions of docs/report/.


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
        html=report(f"{RESULTS}/tables/comparison.html", category="Tables",
                    caption="../docs/report/comparison.rst"),
    log:
        f"{LOGS}/comparison_tables.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd compare --config {input.config:q} --markdown {output.md:q} --csv {output.csv:q}"
        " --latex {output.tex:q} --html {output.html:q} > {log:q} 2>&1"


# PNG for the report and SVG for papers; each plot has its caption in docs/report/<plot>.rst.
rule plots:
    input:
        comparison=f"{RESULTS}/tables/comparison.csv",
        config=f"{RESULTS}/config.yaml",
        trainings=list(PLAN.training_summaries().values()),
    output:
        png=[report(path, category="Plots", caption=f"../docs/report/{Path(path).stem}.rst")
             for path in PLAN.plot_files("png")],
        svg=PLAN.plot_files("svg"),
    log:
        f"{LOGS}/plots.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd plots --config {input.config:q} --comparison {input.comparison:q}"
        " --outputs {output.png:q} {output.svg:q} > {log:q} 2>&1"
