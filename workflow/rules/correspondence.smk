# Semantic correspondence: per-activation nearest-neighbour PCK (paper §2.8 protocol) and the demo table.

rule pck_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model}"
    input:
        store=lambda w: wf.correspondence.screen_store(config, w.model),
    output:
        f"{RESULTS}/correspondence/{{model}}/nn_pck.csv",
    wildcard_constraints:
        model="(?!pixels/|table1/)[^/]+",  # pixels/ is the raw-pixel reference (rule pck_pixels)
    params:
        layerset=wf.correspondence.section(config).get("layer_set"),
        root=lambda w: wf.correspondence.dataset_root(config),
        split=lambda w: wf.correspondence.dataset_split(config),
        subset=lambda w: wf.correspondence.subset_arg(config),
        eval_size=wf.correspondence.eval_size_arg(config),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/{{model}}.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen --store {params.store} --dataset-root {params.root} --split {params.split} {params.subset} "
        "{params.eval_size} --model-name {wildcards.model} --threads {threads} --out {output}"


rule pck_pixels:
    message: "NN PCK of the raw-pixel patch reference"
    input:
        data=lambda w: wf.dataset_input(config, wf.correspondence.screen_dataset(config)),
    output:
        f"{RESULTS}/correspondence/pixels/nn_pck.csv",
    params:
        root=lambda w: wf.correspondence.dataset_root(config),
        split=lambda w: wf.correspondence.dataset_split(config),
        subset=lambda w: wf.correspondence.subset_arg(config),
        size=config["extraction"]["image_size"],
        eval_size=wf.correspondence.eval_size_arg(config),
        patch=wf.correspondence.pixel_patch_arg(config),
    log:
        f"{LOGS}/correspondence/pixels.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-pixels --dataset-root {params.root} --split {params.split} {params.subset} --image-size {params.size} "
        "{params.eval_size} {params.patch} --threads {threads} --out {output}"


rule pck_table:
    message: "merge the NN PCK tables"
    input:
        models=[wf.correspondence.screen_csv(config, m) for m in wf.correspondence.models(config)],
        pixels=wf.correspondence.screen_csv(config, "pixels") if wf.correspondence.pixel_reference(config) else [],
    output:
        f"{RESULTS}/correspondence/nn_pck_table.csv",
    params:
        labels=lambda w, input: wf.correspondence.pck_table_labels(config, input.models, input.pixels),
    log:
        f"{LOGS}/correspondence/table.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} pck-table {params.labels} --out {output}"


# ---- A practical set chosen by our own screen, for families the paper gives none (the DiTs; ours) ----
# diffact.tasks.correspondence.practical: screen every activation on a validation split, keep the best `top`
# (at most one per block), score the concatenation with the hard NN on the correspondence screen's test images.

rule practical_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model} on the validation split that chooses its practical set"
    input:
        store=lambda w: wf.correspondence.screen_store(config, w.model, wf.correspondence.practical_select_on(config)),
    output:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/screen_val.csv",
    params:
        layerset=wf.correspondence.section(config).get("layer_set"),
        root=lambda w: wf.correspondence.dataset_root(config, wf.correspondence.practical_select_on(config)),
        split=lambda w: wf.correspondence.dataset_split(config, wf.correspondence.practical_select_on(config), "val"),
        subset=lambda w: wf.correspondence.subset_arg(config, wf.correspondence.practical_select_on(config)),
        eval_size=wf.correspondence.eval_size_arg(config),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-screen.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen --store {params.store} --dataset-root {params.root} --split {params.split} {params.subset} "
        "{params.eval_size} --model-name {wildcards.model} --threads {threads} --out {output}"


rule practical_set:
    message: "the practical set of {wildcards.model}, chosen by its validation screen (ours)"
    input:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/screen_val.csv",
    output:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/practical.yaml",
    params:
        family=lambda w: wf.model_entry(config, w.model)["family"],
        choice=wf.correspondence.practical_set_args(config),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-set.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} practical-set --screen {input} --family {params.family} --model-name {wildcards.model} "
        "{params.choice} --out {output}"


rule practical_nn:
    message: "NN PCK of {wildcards.model}'s practical set on the test images"
    input:
        layers=f"{wf.correspondence.practical_dir(config)}/{{model}}/practical.yaml",
        store=lambda w: wf.correspondence.screen_store(config, w.model),
    output:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/nn-test.csv",
    params:
        root=lambda w: wf.correspondence.dataset_root(config),
        split=lambda w: wf.correspondence.dataset_split(config),
        subset=lambda w: wf.correspondence.subset_arg(config) or "--subset all",
        family=lambda w: wf.model_entry(config, w.model)["family"],
        sizes=wf.correspondence.practical_sizes_arg(config),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-nn.log",
    threads: stage_threads("corr_eval")
    resources: **stage_resources("corr_eval")
    conda: ENV
    shell:
        "diffact --log {log} corr-evaluate --method nn --protocol heldout --store {params.store} --layers-file {input.layers} "
        "--dataset-root {params.root} --split {params.split} {params.subset} {params.sizes} --entry {wildcards.model} "
        "--layer-set practical --models {wildcards.model} --families {params.family} --note 'ours: chosen on the validation screen' "
        "--threads {threads} --out {output}"


rule practical_table:
    message: "merge the screen-chosen practical sets' NN PCK"
    input:
        [f"{wf.correspondence.practical_dir(config)}/{m}/nn-test.csv" for m in wf.correspondence.practical_models(config)],
    output:
        f"{wf.correspondence.practical_dir(config)}/practical_nn.csv",
    params:
        labels=lambda w, input: " ".join(f"{m}={p}" for m, p in zip(wf.correspondence.practical_models(config), input)),
    log:
        f"{LOGS}/correspondence/practical/table.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} pck-table {params.labels} --out {output}"


# ---- Table 1: NN and the trained aggregation on the paper's layer sets, paper and heldout protocols ----
# Entries (model × layer set, plus multi-model combinations) come from correspondence.table1 via
# diffact.workflow.correspondence; features come from the `extract` rule's stores of the trn, val and
# test datasets named there. Entries a demo model cannot run become table rows that say why.

rule corr_train:
    message: "train the aggregation conv on {wildcards.entry}/{wildcards.layerset} (paper §2.8)"
    input:
        train=lambda w: wf.correspondence.entry_stores(config, w.entry, w.layerset, "trn"),
        val=lambda w: wf.correspondence.entry_stores(config, w.entry, w.layerset, "val"),
    output:
        evaluations=f"{wf.correspondence.table1_dir(config)}/{{entry}}/{{layerset}}/run/evaluations.csv",
        train_log=f"{wf.correspondence.table1_dir(config)}/{{entry}}/{{layerset}}/run/train_log.csv",
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
        run=lambda w: [f"{wf.correspondence.table1_dir(config)}/{w.entry}/{w.layerset}/run/evaluations.csv"] if w.method == "trained" else [],
        stores=lambda w: wf.correspondence.eval_stores(config, w.entry, w.layerset, w.method, w.protocol),
    output:
        f"{wf.correspondence.table1_dir(config)}/{{entry}}/{{layerset}}/{{method}}-{{protocol}}.csv",
    wildcard_constraints:
        entry="[A-Za-z0-9_.-]+",
        layerset="[A-Za-z0-9_-]+",
        method="nn|trained",
        protocol="paper|heldout",
    params:
        stores=lambda w, input: wf.correspondence.store_args("--store", input.stores),
        run=lambda w: f"--run {wf.correspondence.table1_dir(config)}/{w.entry}/{w.layerset}/run" if w.method == "trained" else "",
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
    params:
        executed=f"{RESULTS}/notebooks/table1_correspondence.ipynb",
        stem=lambda w, output: output.csv.removesuffix(".csv"),
        rulename="table1_notebook",
    log:
        f"{LOGS}/figures/table1_correspondence.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p out_stem={params.stem}"


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
    params:
        executed=f"{RESULTS}/notebooks/fig01_correspondence.ipynb",
        stem=lambda w, output: output.csv.removesuffix(".csv"),
        rulename="fig01_notebook",
    log:
        f"{LOGS}/figures/fig01_correspondence.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p out_stem={params.stem}"
