# Result tables written from the per-model, per-test-set evaluation files: the primary
# teacher's table, the comparison of every model, and its plots. The tables' HTML page and the
# PNG plots go into `snakemake --report report.html` with the captions of docs/report/.


rule teacher_table:
    input:
        evaluations=expand(
            f"{RESULTS}/eval/{PLAN.teacher.name}/{{testset}}.float32.beam{BEAM}.json",
            testset=TESTSETS),
        agreements=PLAN.teacher_agreements(),
    output:
        f"{RESULTS}/tables/teacher.md",
    log:
        f"{LOGS}/teacher_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd report --inputs {input.evaluations:q} --agreements {input.agreements:q}"
        " --output {output:q} > {log:q} 2>&1"


# A study's tables, read from the plan of the run's saved config (no manifest on the command
# line, whose length the OS bounds).
rule comparison_tables:
    input:
        results=comparison_inputs,
        config=f"{RESULTS}/config.yaml",
    output:
        md=f"{RESULTS}/tables/{{study}}.md",
        csv=f"{RESULTS}/tables/{{study}}.csv",
        tex=f"{RESULTS}/tables/{{study}}.tex",
        html=report(f"{RESULTS}/tables/{{study}}.html", category="{study}",
                    subcategory="Tables", caption="../docs/report/comparison.rst"),
    log:
        f"{LOGS}/comparison_tables/{{study}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd compare --config {input.config:q} --study {wildcards.study:q}"
        " --markdown {output.md:q} --csv {output.csv:q}"
        " --latex {output.tex:q} --html {output.html:q} > {log:q} 2>&1"


# PNG for the report and SVG for papers; each plot has its caption in docs/report/<plot>.rst.
rule plots:
    input:
        comparison=f"{RESULTS}/tables/{{study}}.csv",
        config=f"{RESULTS}/config.yaml",
        trainings=study_trainings,
    output:
        png=[report(path, category="{study}", subcategory="Plots",
                    caption=f"../docs/report/{Path(path).stem}.rst")
             for path in PLAN.plot_files("{study}", "png")],
        svg=PLAN.plot_files("{study}", "svg"),
    log:
        f"{LOGS}/plots/{{study}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd plots --config {input.config:q} --study {wildcards.study:q}"
        " --comparison {input.comparison:q}"
        " --outputs {output.png:q} {output.svg:q} > {log:q} 2>&1"


# Selective KD's threshold and selected share per update (Wang et al.'s Figure 6), for the
# studies with Selective KD students.
rule selection_plot:
    input:
        comparison=f"{RESULTS}/tables/{{study}}.csv",
        config=f"{RESULTS}/config.yaml",
        trainings=study_trainings,
    output:
        png=report(f"{RESULTS}/plots/{{study}}/selection.png", category="{study}",
                   subcategory="Plots", caption="../docs/report/selection.rst"),
        svg=f"{RESULTS}/plots/{{study}}/selection.svg",
    log:
        f"{LOGS}/plots/{{study}}.selection.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "nmtkd plots --config {input.config:q} --study {wildcards.study:q}"
        " --comparison {input.comparison:q} --outputs {output.png:q} {output.svg:q}"
        " > {log:q} 2>&1"
