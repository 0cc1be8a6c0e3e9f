# Semantic correspondence: per-activation nearest-neighbour PCK (paper §2.8 protocol) and the demo table.

# The screens stream: each image's pool is extracted once (within a feature cache) and only the scores are kept, so no
# pool store is written (issue #19; the CSV is byte-identical to scoring a stored pool: tests/test_pck_stream.py).
rule pck_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model}"
    input:
        lambda w: wf.correspondence.screen_input(config, w.model),
    output:
        f"{RESULTS}/correspondence/{{model}}/nn_pck.csv",
    wildcard_constraints:
        model="(?!pixels/|table1/)[^/]+",  # pixels/ is the raw-pixel reference (rule pck_pixels)
    params:
        layerset=wf.correspondence.section(config).get("layer_set"),
        source=lambda w: wf.correspondence.screen_source_args(config, w.model),
        eval_size=wf.correspondence.eval_size_arg(config),
    log:
        f"{LOGS}/correspondence/{{model}}.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen {params.source} {params.eval_size} --model-name {wildcards.model} --out {output}"


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
        lambda w: wf.correspondence.screen_input(config, w.model, wf.correspondence.practical_select_on(config)),
    output:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/screen_val.csv",
    params:
        layerset=wf.correspondence.section(config).get("layer_set"),
        source=lambda w: wf.correspondence.screen_source_args(config, w.model, wf.correspondence.practical_select_on(config)),
        eval_size=wf.correspondence.eval_size_arg(config),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-screen.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} pck-screen {params.source} {params.eval_size} --model-name {wildcards.model} --out {output}"


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


# Streamed like the screens (issue #19): the screened pool's extract arguments, the chosen layers picked from each
# image's pool, the same numbers as scoring that store, which is never written (tests/test_practical_stream.py).
rule practical_nn:
    message: "NN PCK of {wildcards.model}'s practical set on the test images"
    input:
        lambda w: wf.correspondence.screen_input(config, w.model),
        layers=f"{wf.correspondence.practical_dir(config)}/{{model}}/practical.yaml",
    output:
        f"{wf.correspondence.practical_dir(config)}/{{model}}/nn-test.csv",
    params:
        source=lambda w: wf.correspondence.screen_source_args(config, w.model),
        family=lambda w: wf.model_entry(config, w.model)["family"],
        sizes=wf.correspondence.practical_sizes_arg(config),
    log:
        f"{LOGS}/correspondence/practical/{{model}}-nn.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} corr-evaluate --method nn --protocol heldout {params.source} --layers-file {input.layers} "
        "{params.sizes} --entry {wildcards.model} "
        "--layer-set practical --models {wildcards.model} --families {params.family} --note 'ours: chosen on the validation screen' "
        "--out {output}"


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
