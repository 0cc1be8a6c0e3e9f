# The three universal properties (paper §4, App. A/E): per-activation numbers, the qualitative filter (§5.1)
# and the property figures. Config → scenes, stores and targets: diffact.workflow.properties.
#
#   results/properties/<model>/<scene>/noise_share.csv   P1: noise share over K diffusion-noise draws
#   results/properties/<model>/<scene>/maps.csv          P2 granularity + P3 locality, streamed from the model (the
#                                                        scene's store is never written for them)
#   results/properties/<model>/<scene>/figure_maps.npz   the maps the property figures draw, made beside maps.csv
#   results/properties/<model>/properties.csv            both, every scene, + NN PCK and the filter verdict
#   results/properties/control-unet/...                  the same for the Fig 15 control (a conventional U-Net;
#                                                        trained in models.smk, its store made in extract.smk)
#   results/properties/filter/<family>.csv               the qualitative filter on the paper's candidate pool
#   results/properties/unavailable.csv                   which property figures this profile cannot make, and why


rule noise_share:
    message: "P1 noise share of every {params.layerset} activation of {wildcards.prop_model} on {wildcards.scene}"
    input:
        model=lambda w: wf.model_input(config, w.prop_model),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
        scene=wf.properties.scene_pattern(config),
    output:
        wf.properties.path(config, "{prop_model}", "{scene}", "noise_share.csv"),
    params:
        layerset=wf.properties.layer_set(config),
        args=lambda w: wf.extract_args(config, w.scene, w.prop_model, wf.properties.layer_set(config)),
        sampling=wf.properties.noise_share_args(config),
    log:
        f"{LOGS}/properties/{{prop_model}}/{{scene}}/noise_share.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} noise-share {params.args} {params.sampling} --out {output}"


rule property_maps:
    message: "P2 granularity and P3 locality of every activation of {wildcards.prop_model} on {wildcards.scene} (streamed)"
    input:
        model=lambda w: wf.model_input(config, w.prop_model),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
        scene=wf.properties.scene_pattern(config),
    output:
        csv=wf.properties.path(config, "{prop_model}", "{scene}", "maps.csv"),
        figure_maps=wf.properties.path(config, "{prop_model}", "{scene}", "figure_maps.npz"),
    params:
        args=lambda w: wf.properties.streamed_store_args(config, w.prop_model, w.scene),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        sampling=wf.properties.maps_args(config),
        seed=config["seed"],
        figure_images=wf.properties.FIGURE_IMAGES,
    log:
        f"{LOGS}/properties/{{prop_model}}/{{scene}}/maps.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} property-maps {params.args} --labels-root {params.root} {params.sampling} "
        "--seed {params.seed} --out {output.csv} --figure-maps {output.figure_maps} "
        "--figure-images {params.figure_images}"


# The control's numbers come from the store control_features writes (it is no diffusers pipeline to stream).
rule control_property_maps:
    message: "P2 granularity and P3 locality of every activation of the control U-Net on {wildcards.scene}"
    input:
        store=lambda w: wf.properties.control_store(config, w.scene),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        scene=wf.properties.scene_pattern(config),
    output:
        csv=wf.properties.path(config, wf.properties.CONTROL, "{scene}", "maps.csv"),
        figure_maps=wf.properties.path(config, wf.properties.CONTROL, "{scene}", "figure_maps.npz"),
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        sampling=wf.properties.maps_args(config),
        seed=config["seed"],
        figure_images=wf.properties.FIGURE_IMAGES,
    log:
        f"{LOGS}/properties/{wf.properties.CONTROL}/{{scene}}/maps.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} property-maps --store {params.store} --labels-root {params.root} {params.sampling} "
        "--seed {params.seed} --out {output.csv} --figure-maps {output.figure_maps} "
        "--figure-images {params.figure_images}"


rule properties_table:
    message: "property table of {wildcards.any_prop_model}"
    input:
        noise=lambda w: wf.properties.scene_csvs(config, w.any_prop_model, "noise_share.csv"),
        maps=lambda w: wf.properties.scene_csvs(config, w.any_prop_model, "maps.csv"),
        pck=lambda w: wf.properties.pck_input(config, w.any_prop_model),
    wildcard_constraints:
        any_prop_model=wf.properties.any_model_pattern(config),
    output:
        wf.properties.path(config, "{any_prop_model}", "properties.csv"),
    params:
        noise=lambda w, input: wf.properties.scene_args(config, input.noise),
        maps=lambda w, input: wf.properties.scene_args(config, input.maps),
        pck=lambda w, input: f"--pck {input.pck}" if input.pck else "",
        family=lambda w: wf.properties.verdict_family_arg(config, w.any_prop_model),
    log:
        f"{LOGS}/properties/{{any_prop_model}}/table.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} properties-table --noise {params.noise} --maps {params.maps} {params.pck} {params.family} "
        "--model-name {wildcards.any_prop_model} --out {output}"


rule qualitative_filter:
    message: "qualitative filter (§5.1) on the {wildcards.family} candidate pool"
    input:
        sets="config/layers/{family}/pool.yaml",
    output:
        report=wf.properties.path(config, "filter", "{family}.csv"),
        compare=wf.properties.path(config, "filter", "{family}_vs_paper.csv"),
    wildcard_constraints:
        family="sd15|sdxl",
    params:
        source=lambda w: wf.properties.filter_source(config, w.family),
    log:
        f"{LOGS}/properties/filter_{{family}}.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} qualitative-filter --model {params.source} --family {wildcards.family} --set pool "
        "--out {output.report} --compare-out {output.compare}"


rule properties_unavailable:
    message: "which property figures this profile can make"
    output:
        wf.properties.path(config, "unavailable.csv"),
    params:
        models=wf.properties.unavailable_model_args(config),
        scenes=" ".join(wf.properties.scenes(config)),
        missing=" ".join(f"--missing-scene {s}" for s in wf.properties.missing_scenes(config)),
        control="--control" if wf.properties.with_control(config) else "",
    log:
        f"{LOGS}/properties/unavailable.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} properties-unavailable {params.models} --scenes {params.scenes} {params.missing} "
        "{params.control} --out {output}"
