# The three universal properties (paper §4, App. A/E): per-activation numbers, the qualitative filter (§5.1)
# and the property figures. Appends its final outputs to TARGETS (and figure/table outputs to FIGURE_TARGETS).
#
#   results/properties/<model>/<scene>/noise_share.csv   P1: noise share over K diffusion-noise draws
#   results/properties/<model>/<scene>/maps.csv          P2 granularity + P3 locality, from the scene's feature store
#   results/properties/<model>/properties.csv            both, every scene, + NN PCK and the filter verdict
#   results/properties/control-unet/...                  the same for the Fig 15 control (a conventional U-Net)
#   results/properties/filter/<family>.csv               the qualitative filter on the paper's candidate pool
#   results/properties/unavailable.csv                   which property figures this profile cannot make, and why

import re

PROP = config.get("properties", {})
PROP_DIR = f"{RESULTS}/properties"
PROP_FIGURES = PAPER_FIGURES
CONTROL = "control-unet"


include: "helpers/properties.smk"


if PROP:
    _scenes = prop_scenes()
    _models = prop_models() if _scenes else []
    _with_control = bool(PROP.get("control")) and control_scene() is not None
    TARGETS.append(f"{PROP_DIR}/unavailable.csv")
    TARGETS.extend(f"{PROP_DIR}/filter/{family}.csv" for family in PROP.get("filter_models", {}))
    TARGETS.extend(f"{PROP_DIR}/{m}/properties.csv" for m in _models + ([CONTROL] if _with_control else []))
    FIGURE_TARGETS.append(f"{PROP_FIGURES}/properties_filter.csv")
    if _models:
        FIGURE_TARGETS.extend([f"{PROP_FIGURES}/properties_numbers.png", f"{PROP_FIGURES}/properties_summary.csv"])
        if len({wf.is_transformer(config, m) for m in _models}) == 2:  # U-Nets and DiTs: compare them
            FIGURE_TARGETS.append(f"{PROP_FIGURES}/properties_unet_vs_dit.png")
        for m in [m for m in _models if not wf.is_transformer(config, m)]:  # per-model figures: U-Net layouts
            FIGURE_TARGETS.extend([f"{PROP_FIGURES}/fig03_properties_{m}.png", f"{PROP_FIGURES}/fig05_13_scenes_{m}.png",
                                   f"{PROP_FIGURES}/fig16_increments_{m}.png", f"{PROP_FIGURES}/fig17_resolution_{m}.png",
                                   f"{PROP_FIGURES}/fig18_vits_{m}.png"])
            if prop_pck(m):
                FIGURE_TARGETS.append(f"{PROP_FIGURES}/fig04_pck_{m}.png")
    if _with_control and _models:
        FIGURE_TARGETS.append(f"{PROP_FIGURES}/fig15_control.png")


# Per-rule constraints (a global wildcard_constraints block would also bind other files' {scene} wildcards).
PROP_MODEL = _alternatives(prop_models())
ANY_PROP_MODEL = _alternatives(prop_models() + [CONTROL])
PROP_SCENE = _alternatives(prop_scenes())


rule noise_share:
    message: "P1 noise share of every {params.layerset} activation of {wildcards.prop_model} on {wildcards.scene}"
    input:
        model=lambda w: wf.model_input(config, w.prop_model),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        prop_model=PROP_MODEL,
        scene=PROP_SCENE,
    output:
        f"{PROP_DIR}/{{prop_model}}/{{scene}}/noise_share.csv",
    params:
        layerset=PROP.get("layer_set", "screen"),
        args=lambda w: wf.extract_args(config, w.scene, w.prop_model, PROP.get("layer_set", "screen")),
        draws=PROP.get("draws", 4),
        images=PROP.get("images", 0),
    log:
        f"{LOGS}/properties/{{prop_model}}/{{scene}}/noise_share.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} noise-share {params.args} --draws {params.draws} --images {params.images} --out {output}"


rule property_maps:
    message: "P2 granularity and P3 locality of every activation of {wildcards.any_prop_model} on {wildcards.scene}"
    input:
        store=lambda w: prop_store(w.any_prop_model, w.scene),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        any_prop_model=ANY_PROP_MODEL,
        scene=PROP_SCENE,
    output:
        f"{PROP_DIR}/{{any_prop_model}}/{{scene}}/maps.csv",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        images=PROP.get("images", 0),
        pairs=PROP.get("pairs", 2000),
        seed=config["seed"],
    log:
        f"{LOGS}/properties/{{any_prop_model}}/{{scene}}/maps.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} property-maps --store {params.store} --labels-root {params.root} --images {params.images} "
        "--pairs {params.pairs} --seed {params.seed} --out {output}"


rule properties_table:
    message: "property table of {wildcards.any_prop_model}"
    input:
        noise=lambda w: [f"{PROP_DIR}/{w.any_prop_model}/{s}/noise_share.csv" for s in prop_scenes()],
        maps=lambda w: [f"{PROP_DIR}/{w.any_prop_model}/{s}/maps.csv" for s in prop_scenes()],
        pck=lambda w: prop_pck(w.any_prop_model),
    wildcard_constraints:
        any_prop_model=ANY_PROP_MODEL,
    output:
        f"{PROP_DIR}/{{any_prop_model}}/properties.csv",
    params:
        noise=lambda w, input: " ".join(f"{s}={p}" for s, p in zip(prop_scenes(), input.noise)),
        maps=lambda w, input: " ".join(f"{s}={p}" for s, p in zip(prop_scenes(), input.maps)),
        pck=lambda w, input: f"--pck {input.pck}" if input.pck else "",
        # the §5.1 qualitative filter is a rule over U-Net stages: no verdict for the control or a DiT
        family=lambda w: "" if w.any_prop_model == CONTROL or wf.is_transformer(config, w.any_prop_model)
        else f"--family {wf.model_entry(config, w.any_prop_model)['family']}",
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
        report=f"{PROP_DIR}/filter/{{family}}.csv",
        compare=f"{PROP_DIR}/filter/{{family}}_vs_paper.csv",
    wildcard_constraints:
        family="sd15|sdxl",
    params:
        source=lambda w: PROP.get("filter_models", {})[w.family],
    log:
        f"{LOGS}/properties/filter_{{family}}.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} qualitative-filter --model {params.source} --family {wildcards.family} --set pool "
        "--out {output.report} --compare-out {output.compare}"


rule train_control_unet:
    message: "train the Fig 15 control (conventional residual U-Net) on {params.scene}"
    input:
        data=lambda w: wf.dataset_input(config, control_scene()),
    output:
        model=f"{RESULTS}/models/{CONTROL}/model.safetensors",
        loss=f"{RESULTS}/models/{CONTROL}.loss.csv",
    params:
        scene=control_scene(),
        root=lambda w: wf.dataset_entry(config, control_scene())["root"],
        size=config["extraction"]["image_size"],
        steps=PROP.get("control", {}).get("steps", 60),
        seed=config["seed"],
        folder=lambda w, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/models/{CONTROL}.log",
    threads: stage_threads("train_unet")
    resources: **stage_resources("train_unet")
    conda: ENV
    shell:
        "diffact --log {log} train-control-unet --dataset-root {params.root} --out {params.folder} "
        "--image-size {params.size} --steps {params.steps} --seed {params.seed} --loss-csv {output.loss}"


rule control_features:
    message: "feature store and noise share of the control U-Net on {wildcards.scene}"
    input:
        model=f"{RESULTS}/models/{CONTROL}/model.safetensors",
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        scene=PROP_SCENE,
    output:
        store=f"{PROP_DIR}/{CONTROL}/{{scene}}/store/complete.json",
        noise=f"{PROP_DIR}/{CONTROL}/{{scene}}/noise_share.csv",
    params:
        folder=lambda w, input: os.path.dirname(input.model),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        images=PROP.get("images", 0),
        draws=PROP.get("draws", 4),
        t=config["extraction"]["t"],
        seed=config["seed"],
        store=lambda w, output: os.path.dirname(output.store),
    log:
        f"{LOGS}/properties/{CONTROL}/{{scene}}/features.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} control-features --model {params.folder} --dataset-root {params.root} "
        "--images {params.images} --draws {params.draws} --t {params.t} --seed {params.seed} "
        "--store-out {params.store} --noise-out {output.noise}"


rule properties_unavailable:
    message: "which property figures this profile can make"
    output:
        f"{PROP_DIR}/unavailable.csv",
    params:
        models=" ".join(
            f"--model {m} {wf.model_entry(config, m)['family']} {wf.model_entry(config, m)['source']} "
            f"{'demo' if wf.model_entry(config, m).get('build') else 'weights'}" for m in prop_models()),
        scenes=" ".join(prop_scenes()),
        missing=" ".join(f"--missing-scene {s}" for s in missing_scenes()),
        control="--control" if PROP.get("control") and control_scene() else "",
    log:
        f"{LOGS}/properties/unavailable.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} properties-unavailable {params.models} --scenes {params.scenes} {params.missing} "
        "{params.control} --out {output}"


# ---- figures (notebooks read results/ only) ------------------------------------------------------------------


rule fig_properties_numbers:
    message: "the three property numbers along the forward order, every model and the control"
    input:
        tables=lambda w: [f"{PROP_DIR}/{m}/properties.csv" for m in prop_models()]
        + ([f"{PROP_DIR}/{CONTROL}/properties.csv"] if PROP.get("control") and control_scene() else []),
        nb="notebooks/properties_numbers.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PROP_FIGURES}/properties_numbers.png", caption="../report/fig_properties_numbers_png.rst", category="Properties"),
        pdf=f"{PROP_FIGURES}/properties_numbers.pdf",
        csv=report(f"{PROP_FIGURES}/properties_summary.csv", caption="../report/fig_properties_numbers_csv.rst", category="Properties"),
        md=f"{PROP_FIGURES}/properties_summary.md",
    params:
        tables=lambda w, input: wf.list_param(input.tables),
        rulename="fig_properties_numbers",
        executed=f"{RESULTS}/notebooks/properties_numbers.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
        summary_stem=lambda w, output: output.csv.removesuffix(".csv"),
    log:
        f"{LOGS}/figures/properties_numbers.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'tables={params.tables}' -p out_stem={params.out_stem} "
        "-p summary_stem={params.summary_stem}"


rule fig_properties_unet_vs_dit:
    message: "the three properties along depth, U-Nets vs DiTs"
    input:
        tables=lambda w: [f"{PROP_DIR}/{m}/properties.csv" for m in prop_models()],
        nb="notebooks/properties_unet_vs_dit.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PROP_FIGURES}/properties_unet_vs_dit.png", caption="../report/fig_properties_unet_vs_dit.rst", category="Properties"),
        pdf=f"{PROP_FIGURES}/properties_unet_vs_dit.pdf",
        csv=f"{PROP_FIGURES}/properties_unet_vs_dit.csv",
        md=f"{PROP_FIGURES}/properties_unet_vs_dit.md",
    params:
        tables=lambda w, input: wf.list_param(input.tables),
        rulename="fig_properties_unet_vs_dit",
        executed=f"{RESULTS}/notebooks/properties_unet_vs_dit.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/properties_unet_vs_dit.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'tables={params.tables}' -p out_stem={params.out_stem}"


rule fig_properties_filter:
    message: "the qualitative filter against the paper's Tables 4-6"
    input:
        reports=lambda w: [f"{PROP_DIR}/filter/{f}_vs_paper.csv" for f in PROP.get("filter_models", {})],
        nb="notebooks/properties_filter.py",
    output:
        csv=report(f"{PROP_FIGURES}/properties_filter.csv", caption="../report/fig_properties_filter.rst", category="Properties"),
        md=f"{PROP_FIGURES}/properties_filter.md",
    params:
        reports=lambda w, input: wf.list_param(input.reports),
        rulename="fig_properties_filter",
        executed=f"{RESULTS}/notebooks/properties_filter.ipynb",
        out_stem=lambda w, output: output.csv.removesuffix(".csv"),
    log:
        f"{LOGS}/figures/properties_filter.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'reports={params.reports}' -p out_stem={params.out_stem}"


rule fig03_properties:
    message: "Figure 3 analogue (noise, granularity, locality maps) of {wildcards.prop_model}"
    input:
        table=f"{PROP_DIR}/{{prop_model}}/properties.csv",
        store=lambda w: prop_store(w.prop_model, figure_scene()),
        nb="notebooks/fig03_properties.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        png=report(f"{PROP_FIGURES}/fig03_properties_{{prop_model}}.png", caption="../report/fig03_properties.rst", category="Figure 3"),
        pdf=f"{PROP_FIGURES}/fig03_properties_{{prop_model}}.pdf",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, figure_scene())["root"],
        rulename="fig03_properties",
        executed=lambda w: f"{RESULTS}/notebooks/fig03_properties_{w.prop_model}.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig03_properties_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p store={params.store} -p labels_root={params.root} "
        "-p out_stem={params.out_stem}"


rule fig04_pck:
    message: "Figure 4 analogue (single-activation NN PCK) of {wildcards.prop_model}"
    input:
        table=f"{PROP_DIR}/{{prop_model}}/properties.csv",
        nb="notebooks/fig04_pck.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        png=report(f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.png", caption="../report/fig04_pck_png.rst", category="Figure 4"),
        pdf=f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.pdf",
        csv=report(f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.csv", caption="../report/fig04_pck_csv.rst", category="Figure 4"),
        md=f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.md",
    params:
        rulename="fig04_pck",
        executed=lambda w: f"{RESULTS}/notebooks/fig04_pck_{w.prop_model}.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig04_pck_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p out_stem={params.out_stem}"


rule fig05_13_scenes:
    message: "Figures 5-13 analogue (PCA maps along the forward order on every scene) of {wildcards.prop_model}"
    input:
        stores=lambda w: _scene_stores(w.prop_model),
        nb="notebooks/fig05_13_scenes.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        png=report(f"{PROP_FIGURES}/fig05_13_scenes_{{prop_model}}.png", caption="../report/fig05_13_scenes.rst", category="Figures 5-13"),
        pdf=f"{PROP_FIGURES}/fig05_13_scenes_{{prop_model}}.pdf",
    params:
        stores=lambda w, input: wf.list_param(os.path.dirname(s) for s in input.stores),
        scenes=wf.list_param(prop_scenes()),
        rulename="fig05_13_scenes",
        executed=lambda w: f"{RESULTS}/notebooks/fig05_13_scenes_{w.prop_model}.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig05_13_scenes_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'stores={params.stores}' -p 'scenes={params.scenes}' -p model={wildcards.prop_model} "
        "-p out_stem={params.out_stem}"


rule fig16_18_within:
    message: "Figures 16-18 analogues (increments, granularity within a resolution and across its ViTs) of {wildcards.prop_model}"
    input:
        table=f"{PROP_DIR}/{{prop_model}}/properties.csv",
        store=lambda w: prop_store(w.prop_model, figure_scene()),
        nb="notebooks/fig16_18_within.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        fig16=report(f"{PROP_FIGURES}/fig16_increments_{{prop_model}}.png", caption="../report/fig16_18_within_fig16.rst", category="Figures 16-18"),
        fig17=report(f"{PROP_FIGURES}/fig17_resolution_{{prop_model}}.png", caption="../report/fig16_18_within_fig17.rst", category="Figures 16-18"),
        fig18=report(f"{PROP_FIGURES}/fig18_vits_{{prop_model}}.png", caption="../report/fig16_18_within_fig18.rst", category="Figures 16-18"),
    params:
        store=lambda w, input: os.path.dirname(input.store),
        scene=figure_scene(),
        rulename="fig16_18_within",
        executed=lambda w: f"{RESULTS}/notebooks/fig16_18_{w.prop_model}.ipynb",
        out_dir=lambda w, output: os.path.dirname(output.fig16),
    log:
        f"{LOGS}/figures/fig16_18_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p store={params.store} -p scene={params.scene} -p model={wildcards.prop_model} "
        "-p out_dir={params.out_dir}"


rule fig15_control:
    message: "Figure 15 analogue: the control U-Net beside the diffusion U-Nets"
    input:
        control=f"{PROP_DIR}/{CONTROL}/properties.csv",
        tables=lambda w: [f"{PROP_DIR}/{m}/properties.csv" for m in prop_models()],
        store=lambda w: prop_store(CONTROL, control_scene()),
        nb="notebooks/fig15_control.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PROP_FIGURES}/fig15_control.png", caption="../report/fig15_control.rst", category="Figure 15"),
        pdf=f"{PROP_FIGURES}/fig15_control.pdf",
    params:
        tables=lambda w, input: wf.list_param(input.tables),
        store=lambda w, input: os.path.dirname(input.store),
        rulename="fig15_control",
        executed=f"{RESULTS}/notebooks/fig15_control.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig15_control.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p control={input.control} -p 'tables={params.tables}' -p store={params.store} "
        "-p out_stem={params.out_stem}"
