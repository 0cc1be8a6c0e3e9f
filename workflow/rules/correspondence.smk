# Semantic correspondence: per-activation nearest-neighbour PCK (paper §2.8 protocol) and the demo table.

CORR = config.get("correspondence", {})
if CORR:
    TARGETS.append(f"{RESULTS}/correspondence/nn_pck_table.csv")


include: "helpers/correspondence.smk"


rule pck_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model}"
    input:
        store=lambda w: wf.store_done(config, CORR["dataset"], w.model, CORR["layer_set"]),
    output:
        f"{RESULTS}/correspondence/{{model}}/nn_pck.csv",
    wildcard_constraints:
        model="(?!pixels/|table1/)[^/]+",  # pixels/ is the raw-pixel reference (rule pck_pixels)
    params:
        layerset=CORR.get("layer_set"),
        root=lambda w: wf.dataset_entry(config, CORR["dataset"])["root"],
        split=lambda w: wf.dataset_entry(config, CORR["dataset"]).get("split", "test"),
        subset=lambda w: corr_subset_arg(),
        eval_size=CORR.get("eval_size", 512),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/{{model}}.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen --store {params.store} --dataset-root {params.root} --split {params.split} {params.subset} "
        "--eval-size {params.eval_size} --model-name {wildcards.model} --threads {threads} --out {output}"


rule pck_pixels:
    message: "NN PCK of the raw-pixel patch reference"
    input:
        data=lambda w: wf.dataset_input(config, CORR["dataset"]),
    output:
        f"{RESULTS}/correspondence/pixels/nn_pck.csv",
    params:
        root=lambda w: wf.dataset_entry(config, CORR["dataset"])["root"],
        split=lambda w: wf.dataset_entry(config, CORR["dataset"]).get("split", "test"),
        subset=lambda w: corr_subset_arg(),
        size=config["extraction"]["image_size"],
        eval_size=CORR.get("eval_size", 512),
        patch=CORR.get("pixel_patch", 5),
    log:
        f"{LOGS}/correspondence/pixels.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-pixels --dataset-root {params.root} --split {params.split} {params.subset} --image-size {params.size} "
        "--eval-size {params.eval_size} --patch {params.patch} --threads {threads} --out {output}"


rule pck_table:
    message: "merge the NN PCK tables"
    input:
        models=expand(f"{RESULTS}/correspondence/{{model}}/nn_pck.csv", model=corr_models()),
        pixels=f"{RESULTS}/correspondence/pixels/nn_pck.csv" if CORR.get("pixel_patch") else [],
    output:
        f"{RESULTS}/correspondence/nn_pck_table.csv",
    params:
        labels=lambda w, input: " ".join(
            f"{'random-weights' if m.endswith(wf.RANDOM_SUFFIX) else 'trained'}={p}"
            for m, p in zip(corr_models(), input.models)
        )
        + (f" pixels={input.pixels}" if CORR.get("pixel_patch") else ""),
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

PRACTICAL = CORR.get("practical", {})
PRACTICAL_DIR = f"{RESULTS}/correspondence/practical"
if practical_models():
    TARGETS.append(f"{PRACTICAL_DIR}/practical_nn.csv")


rule practical_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model} on the validation split that chooses its practical set"
    input:
        store=lambda w: wf.store_done(config, PRACTICAL["select_on"], w.model, CORR["layer_set"]),
    output:
        f"{PRACTICAL_DIR}/{{model}}/screen_val.csv",
    params:
        layerset=CORR.get("layer_set"),
        root=lambda w: wf.dataset_entry(config, PRACTICAL["select_on"])["root"],
        split=lambda w: wf.dataset_entry(config, PRACTICAL["select_on"]).get("split", "val"),
        subset=lambda w: corr_subset_arg(PRACTICAL["select_on"]),
        eval_size=CORR.get("eval_size", 512),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-screen.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen --store {params.store} --dataset-root {params.root} --split {params.split} {params.subset} "
        "--eval-size {params.eval_size} --model-name {wildcards.model} --threads {threads} --out {output}"


rule practical_set:
    message: "the practical set of {wildcards.model}, chosen by its validation screen (ours)"
    input:
        f"{PRACTICAL_DIR}/{{model}}/screen_val.csv",
    output:
        f"{PRACTICAL_DIR}/{{model}}/practical.yaml",
    params:
        family=lambda w: wf.model_entry(config, w.model)["family"],
        top=PRACTICAL.get("top", 4),
        metric=PRACTICAL.get("metric", "pck_img@0.10"),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-set.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} practical-set --screen {input} --family {params.family} --model-name {wildcards.model} "
        "--top {params.top} --metric {params.metric} --out {output}"


rule practical_nn:
    message: "NN PCK of {wildcards.model}'s practical set on the test images"
    input:
        layers=f"{PRACTICAL_DIR}/{{model}}/practical.yaml",
        store=lambda w: wf.store_done(config, CORR["dataset"], w.model, CORR["layer_set"]),
    output:
        f"{PRACTICAL_DIR}/{{model}}/nn-test.csv",
    params:
        root=lambda w: wf.dataset_entry(config, CORR["dataset"])["root"],
        split=lambda w: wf.dataset_entry(config, CORR["dataset"]).get("split", "test"),
        subset=lambda w: corr_subset_arg() or "--subset all",
        family=lambda w: wf.model_entry(config, w.model)["family"],
        sizes=f"--feature-size {CORR.get('feature_size', (CORR.get('table1') or {}).get('feature_size', 128))} --eval-size {CORR.get('eval_size', 512)}",
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
        expand(f"{PRACTICAL_DIR}/{{model}}/nn-test.csv", model=practical_models()),
    output:
        f"{PRACTICAL_DIR}/practical_nn.csv",
    params:
        labels=lambda w, input: " ".join(f"{m}={p}" for m, p in zip(practical_models(), input)),
    log:
        f"{LOGS}/correspondence/practical/table.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} pck-table {params.labels} --out {output}"


# ---- Table 1: NN and the trained aggregation on the paper's layer sets, paper and heldout protocols ----
# Entries (model × layer set, plus multi-model combinations) come from correspondence.table1 via
# diffact.tasks.correspondence.plan; features come from the `extract` rule's stores of the trn, val and
# test datasets named there. Entries a demo model cannot run become table rows that say why.

from diffact.tasks.correspondence import plan as corr_plan

T1 = corr_plan.table1_settings(config)
T1_DIR = f"{RESULTS}/correspondence/table1"
CORR_FIGURES = PAPER_FIGURES
if T1:
    TARGETS.append(f"{RESULTS}/correspondence/table1.csv")
    FIGURE_TARGETS.extend([f"{CORR_FIGURES}/table1_correspondence.csv", f"{CORR_FIGURES}/table1_correspondence.tex",
                           f"{CORR_FIGURES}/fig01_correspondence.png", f"{CORR_FIGURES}/fig01_correspondence.pdf"])


T1_ROOT = wf.dataset_entry(config, corr_plan.split_dataset(config, "trn"))["root"] if T1 else ""


rule corr_train:
    message: "train the aggregation conv on {wildcards.entry}/{wildcards.layerset} (paper §2.8)"
    input:
        train=lambda w: t1_stores(w, "trn"),
        val=lambda w: t1_stores(w, "val"),
    output:
        evaluations=f"{T1_DIR}/{{entry}}/{{layerset}}/run/evaluations.csv",
        train_log=f"{T1_DIR}/{{entry}}/{{layerset}}/run/train_log.csv",
    wildcard_constraints:
        entry="[A-Za-z0-9_.-]+",
        layerset="[A-Za-z0-9_-]+",
    params:
        stores=lambda w: " ".join([t1_draw_store_args("--train-store", w, "trn"), t1_draw_store_args("--val-store", w, "val")]),
        root=T1_ROOT,
        opts=lambda w: (f"--val-subset {T1.get('val_subset') or 'all'} {t1_subset_policy('val')} --feature-size {T1['feature_size']} "
                        f"--eval-size {T1['eval_size']} --epochs {T1['epochs']} --pairs-per-epoch {T1['pairs_per_epoch']} "
                        f"--eval-every {T1['eval_every']} --lr {T1['lr']} --weight-decay {T1['weight_decay']} "
                        f"--seed {T1['seed']} --device {T1['device']}"),
        out=lambda w, output: os.path.dirname(output.evaluations),
    log:
        f"{LOGS}/correspondence/table1/{{entry}}-{{layerset}}-train.log",
    threads: stage_threads("corr_train")
    resources: **stage_resources("corr_train")
    conda: ENV
    shell:
        "diffact --log {log} corr-train {params.stores} --dataset-root {params.root} {params.opts} "
        "--threads {threads} --out-dir {params.out}"


rule corr_evaluate:
    message: "Table 1 number: {wildcards.entry}/{wildcards.layerset}, {wildcards.method}, {wildcards.protocol} protocol"
    input:
        run=lambda w: [f"{T1_DIR}/{w.entry}/{w.layerset}/run/evaluations.csv"] if w.method == "trained" else [],
        stores=t1_eval_stores,
    output:
        f"{T1_DIR}/{{entry}}/{{layerset}}/{{method}}-{{protocol}}.csv",
    wildcard_constraints:
        entry="[A-Za-z0-9_.-]+",
        layerset="[A-Za-z0-9_-]+",
        method="nn|trained",
        protocol="paper|heldout",
    params:
        stores=lambda w, input: t1_store_args("--store", input.stores),
        run=lambda w: f"--run {T1_DIR}/{w.entry}/{w.layerset}/run" if w.method == "trained" else "",
        subset=lambda w: " ".join(filter(None, [T1.get("val_subset" if w.protocol == "paper" else "test_subset") or "all",
                                                t1_subset_policy(t1_eval_role(w))])),
        split=t1_eval_role,
        root=T1_ROOT,
        labels=t1_labels,
        opts=lambda w: (f"--feature-size {T1['feature_size']} --eval-size {T1['eval_size']} "
                        f"--select-metric {T1['select_metric']} --device {T1['device']}"),
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
        [f"{T1_DIR}/{e.folder}/{m}-{p}.csv" for e, m, p in corr_plan.result_runs(config)],
    output:
        f"{RESULTS}/correspondence/table1.csv",
    params:
        plan=t1_plan_json() if T1 else "[]",
        methods=",".join(T1.get("methods", [])),
        protocols=",".join(T1.get("protocols", [])),
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
        csv=report(f"{CORR_FIGURES}/table1_correspondence.csv", caption="../report/table1_notebook.rst", category="Table 1"),
        tex=f"{CORR_FIGURES}/table1_correspondence.tex",
        md=f"{CORR_FIGURES}/table1_correspondence.md",
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
        png=report(f"{CORR_FIGURES}/fig01_correspondence.png", caption="../report/fig01_notebook.rst", category="Figure 1"),
        pdf=f"{CORR_FIGURES}/fig01_correspondence.pdf",
        csv=f"{CORR_FIGURES}/fig01_correspondence.csv",
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
