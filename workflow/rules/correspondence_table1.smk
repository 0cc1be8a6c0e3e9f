# Table 1 (paper §2.8): NN and the trained aggregation on the paper's layer sets, paper and heldout protocols.
# Entries (model × layer set, plus multi-model combinations) come from correspondence.table1 via
# diffact.workflow.correspondence; features come from the `extract` rule's stores of the trn, val and
# test datasets named there. Entries a demo model cannot run become table rows that say why.


rule corr_train:
    message: "train the aggregation conv on {wildcards.entry}/{wildcards.layerset} (paper §2.8)"
    input:
        train=lambda w: wf.correspondence.entry_stores(config, w.entry, w.layerset, "trn"),
        val=lambda w: wf.correspondence.entry_stores(config, w.entry, w.layerset, "val"),
        models=lambda w: wf.correspondence.stream_model_inputs(config, w.entry, w.layerset),
    output:
        evaluations=f"{wf.correspondence.run_dir(config, '{entry}', '{layerset}')}/evaluations.csv",
        train_log=f"{wf.correspondence.run_dir(config, '{entry}', '{layerset}')}/train_log.csv",
    wildcard_constraints:
        entry="[A-Za-z0-9_.-]+",
        layerset="[A-Za-z0-9_-]+",
    params:
        train=lambda w: wf.correspondence.draw_store_args(config, "--train-store", w.entry, w.layerset, "trn"),
        val=lambda w: wf.correspondence.draw_store_args(config, "--val-store", w.entry, w.layerset, "val"),
        root=wf.correspondence.table1_root(config),
        opts=lambda w: wf.correspondence.train_options(config),
        out=lambda w, output: os.path.dirname(output.evaluations),
    log:
        f"{LOGS}/correspondence/table1/{{entry}}-{{layerset}}-train.log",
    threads: stage_threads("corr_train")
    resources: **stage_resources("corr_train")
    conda: ENV
    shell:
        "diffact --log {log} corr-train {params.train} {params.val} --dataset-root {params.root} {params.opts} "
        "--threads {threads} --out-dir {params.out}"


rule corr_evaluate:
    message: "Table 1 number: {wildcards.entry}/{wildcards.layerset}, {wildcards.method}, {wildcards.protocol} protocol"
    input:
        run=lambda w: [f"{wf.correspondence.run_dir(config, w.entry, w.layerset)}/evaluations.csv"] if w.method == "trained" else [],
        stores=lambda w: wf.correspondence.eval_stores(config, w.entry, w.layerset, w.method, w.protocol),
        models=lambda w: wf.correspondence.stream_model_inputs(config, w.entry, w.layerset, w.method, w.protocol),
    output:
        f"{wf.correspondence.table1_dir(config)}/{{entry}}/{{layerset}}/{{method}}-{{protocol}}.csv",
    wildcard_constraints:
        entry="[A-Za-z0-9_.-]+",
        layerset="[A-Za-z0-9_-]+",
        method="nn|trained",
        protocol="paper|heldout",
    params:
        stores=lambda w, input: wf.correspondence.eval_source_args(config, w.entry, w.layerset, w.method, w.protocol,
                                                                   input.stores),
        run=lambda w: f"--run {wf.correspondence.run_dir(config, w.entry, w.layerset)}" if w.method == "trained" else "",
        subset=lambda w: wf.correspondence.eval_subset_arg(config, w.protocol),
        split=lambda w: wf.correspondence.eval_role(w.protocol),
        root=wf.correspondence.table1_root(config),
        labels=lambda w: wf.correspondence.entry_labels(config, w.entry, w.layerset),
        opts=lambda w: wf.correspondence.eval_options(config),
    log:
        f"{LOGS}/correspondence/table1/{{entry}}-{{layerset}}-{{method}}-{{protocol}}.log",
    threads: stage_threads("corr_eval")
    resources: **stage_resources("corr_eval")
    conda: ENV
    shell:
        "diffact --log {log} corr-evaluate --method {wildcards.method} --protocol {wildcards.protocol} "
        "{params.stores} {params.run} --dataset-root {params.root} --split {params.split} --subset {params.subset} "
        "{params.opts} {params.labels} --threads {threads} --out {output}"


rule corr_table1:
    message: "Table 1: merge our correspondence numbers with the paper's"
    input:
        wf.correspondence.result_csvs(config),
    output:
        f"{RESULTS}/correspondence/table1.csv",
    params:
        plan=wf.correspondence.plan_json(config),
        methods=",".join(wf.correspondence.table1_settings(config).get("methods", [])),
        protocols=",".join(wf.correspondence.table1_settings(config).get("protocols", [])),
    log:
        f"{LOGS}/correspondence/table1.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} corr-table1 {input} --plan-json {params.plan} --methods {params.methods} "
        "--protocols {params.protocols} --out {output}"


rule table1_notebook:
    message: "Table 1 (CSV + LaTeX) beside the paper's numbers"
    input:
        table=f"{RESULTS}/correspondence/table1.csv",
        nb="notebooks/table1_correspondence.py",
    output:
        csv=report(f"{FIGURES}/table1_correspondence.csv", caption="../report/table1_notebook.rst", category="Table 1"),
        tex=f"{FIGURES}/table1_correspondence.tex",
        md=f"{FIGURES}/table1_correspondence.md",
    log:
        f"{LOGS}/figures/table1_correspondence.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "table1_notebook", "-p table={input.table}")


rule fig01_notebook:
    message: "Figure 1 bars: conventional vs our activations, ours beside the paper's"
    input:
        table=f"{RESULTS}/correspondence/table1.csv",
        nb="notebooks/fig01_correspondence.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/fig01_correspondence.png", caption="../report/fig01_notebook.rst", category="Figure 1"),
        pdf=f"{FIGURES}/fig01_correspondence.pdf",
        csv=f"{FIGURES}/fig01_correspondence.csv",
    log:
        f"{LOGS}/figures/fig01_correspondence.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig01_notebook", "-p table={input.table}")
