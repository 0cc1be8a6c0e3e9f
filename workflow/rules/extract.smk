# Feature extraction into provenance-keyed stores: results/features/<dataset>/<model>/<layer set>-<key>/.
# The key hashes dataset, model, extraction settings and the layer-set file, so changing any of them
# makes a new store instead of mixing features.
# With `extraction.shards: N` > 1, N `extract_shard` jobs each fill the store with every N-th image
# (separate jobs, e.g. one GPU each) and `extract` only merges: it checks every image is there and
# writes complete.json. With 1 (the default) `extract` is the single job that does everything.


rule extract_shard:
    message: "extract {wildcards.layerset} of {wildcards.model} on {wildcards.dataset}, shard {wildcards.shard}/{wildcards.nshards}"
    input:
        model=lambda w: wf.model_input(config, w.model),
        data=lambda w: wf.dataset_input(config, w.dataset),
    output:
        f"{RESULTS}/features/{{dataset}}/{{model}}/{{layerset}}-{{key}}.parts/{{shard}}-of-{{nshards}}.json",
    wildcard_constraints:
        key="[0-9a-f]{12}",
        layerset="[A-Za-z0-9_-]+?",
        shard="[0-9]+",
        nshards="[0-9]+",
    params:
        args=lambda w: wf.extract_args(config, w.dataset, w.model, w.layerset),
        out=lambda w, output: os.path.dirname(output[0]).removesuffix(".parts"),
    log:
        f"{LOGS}/extract/{{dataset}}/{{model}}/{{layerset}}-{{key}}.shard{{shard}}-of-{{nshards}}.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} extract {params.args} --out {params.out} --check-key "
        "--shard {wildcards.shard}/{wildcards.nshards} --receipt {output}"


# Sharded, the `extract` job is a light merge (stage `default`); unsharded it runs the model (stage `extract`).
# `extraction.shards_by_store` may mix both in one run: then the stage is chosen per job.
rule extract:
    message: "extract {wildcards.layerset} of {wildcards.model} on {wildcards.dataset}"
    input:
        model=lambda w: wf.model_input(config, w.model),
        data=lambda w: wf.dataset_input(config, w.dataset),
        shards=lambda w: wf.shard_receipts(config, w.dataset, w.model, w.layerset,
                                           f"{RESULTS}/features/{w.dataset}/{w.model}/{w.layerset}-{w.key}"),
    output:
        f"{RESULTS}/features/{{dataset}}/{{model}}/{{layerset}}-{{key}}/complete.json",
    wildcard_constraints:
        key="[0-9a-f]{12}",
        layerset="[A-Za-z0-9_-]+?",
    params:
        args=lambda w: wf.extract_args(config, w.dataset, w.model, w.layerset),
        out=lambda w, output: os.path.dirname(output[0]),
        command=lambda w: (f"extract-merge --shards {shards}"
                           if (shards := wf.extraction_shards(config, w.dataset, w.model, w.layerset)) > 1
                           else "extract"),
    log:
        f"{LOGS}/extract/{{dataset}}/{{model}}/{{layerset}}-{{key}}.log",
    threads: wf.extract_rule_threads(config, cores=job_cores)
    resources: **wf.extract_rule_resources(config)
    conda: ENV
    shell:
        "diffact --log {log} {params.command} {params.args} --out {params.out} --check-key"


# With `extraction.group: layer_set` (the demo), the unsharded stores of one model and layer set are written by one
# `diffact extract-group` job with one model load (start-up and imports are most of a small store's job): one rule
# per group, whose outputs are the stores' complete.json. A rule without wildcards wins over `extract`, which keeps
# the stores of no group. diffact.workflow.stores plans the groups.
for extract_group in wf.stores.extract_groups(config):
    rule:
        name: extract_group.rule
        message: f"extract {extract_group.layer_set} of {extract_group.model} on {', '.join(extract_group.datasets)} with one model load"
        input:
            model=wf.model_input(config, extract_group.model),
            data=sorted({f for dataset in extract_group.datasets for f in wf.dataset_input(config, dataset)}),
        output:
            extract_group.done_files(config),
        params:
            stores=extract_group.store_args(config),
        log:
            f"{LOGS}/extract/groups/{extract_group.rule}.log",
        threads: stage_threads("extract")
        resources: **stage_resources("extract")
        conda: ENV
        shell:
            "diffact --log {log} extract-group {params.stores}"


# The Fig 15 control U-Net's store, written by its own command (it is no diffusers pipeline), with its noise share.
rule control_features:
    message: "feature store and noise share of the control U-Net on {wildcards.scene}"
    input:
        model=f"{wf.properties.control_model_dir(config)}/model.safetensors",
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        scene=wf.properties.scene_pattern(config),
    output:
        store=f"{wf.properties.prop_dir(config)}/{wf.properties.CONTROL}/{{scene}}/store/complete.json",
        noise=f"{wf.properties.prop_dir(config)}/{wf.properties.CONTROL}/{{scene}}/noise_share.csv",
    params:
        folder=lambda w, input: os.path.dirname(input.model),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        sampling=wf.properties.noise_share_args(config),
        t=config["extraction"]["t"],
        seed=config["seed"],
        store=lambda w, output: os.path.dirname(output.store),
        threads=wf.pinned_threads_args(config),
    log:
        f"{LOGS}/properties/{wf.properties.CONTROL}/{{scene}}/features.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} control-features {params.threads} --model {params.folder} --dataset-root {params.root} "
        "{params.sampling} --t {params.t} --seed {params.seed} "
        "--store-out {params.store} --noise-out {output.noise}"
