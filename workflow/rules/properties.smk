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
PROP_FIGURES = "paper_figures"
CONTROL = "control-unet"


def prop_models():
    return list(PROP.get("models", list(config["models"])))


def prop_scenes():
    """Configured scenes that exist as datasets; the others are reported in unavailable.csv."""
    return [s for s in PROP.get("scenes", []) if s in config["datasets"]]


def missing_scenes():
    return [s for s in PROP.get("scenes", []) if s not in config["datasets"]]


def control_scene():
    scene = PROP.get("control", {}).get("scene")
    return scene if scene in prop_scenes() else None


def figure_scene():
    scene = PROP.get("figure_scene")
    return scene if scene in prop_scenes() else (prop_scenes() or [None])[0]


def prop_store(model, scene):
    """The feature store (complete.json) the map properties of (model, scene) read."""
    if model == CONTROL:
        return f"{PROP_DIR}/{CONTROL}/{scene}/store/complete.json"
    return wf.store_done(config, scene, model, PROP.get("layer_set", "screen"))


def prop_pck(model):
    """The model's NN PCK screening CSV (correspondence.smk), when the profile screens correspondence."""
    if PROP.get("pck", True) and config.get("correspondence") and model != CONTROL:
        return f"{RESULTS}/correspondence/{model}/nn_pck.csv"
    return []


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "^$"


def _list_param(items):
    return "[" + ",".join(items) + "]"


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
        for m in _models:
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
    threads: workflow.cores
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
        family=lambda w: "" if w.any_prop_model == CONTROL else f"--family {wf.model_entry(config, w.any_prop_model)['family']}",
    log:
        f"{LOGS}/properties/{{any_prop_model}}/table.log",
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
        folder=f"{RESULTS}/models/{CONTROL}",
    log:
        f"{LOGS}/models/{CONTROL}.log",
    threads: workflow.cores
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
        folder=f"{RESULTS}/models/{CONTROL}",
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        images=PROP.get("images", 0),
        draws=PROP.get("draws", 4),
        t=config["extraction"]["t"],
        seed=config["seed"],
        store=lambda w, output: os.path.dirname(output.store),
    log:
        f"{LOGS}/properties/{CONTROL}/{{scene}}/features.log",
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
    conda: ENV
    shell:
        "diffact --log {log} properties-unavailable {params.models} --scenes {params.scenes} {params.missing} "
        "{params.control} --out {output}"


# ---- figures (notebooks read results/ only) ------------------------------------------------------------------

def _scene_stores(model):
    return [prop_store(model, s) for s in prop_scenes()]


rule fig_properties_numbers:
    message: "the three property numbers along the forward order, every model and the control"
    input:
        tables=lambda w: [f"{PROP_DIR}/{m}/properties.csv" for m in prop_models()]
        + ([f"{PROP_DIR}/{CONTROL}/properties.csv"] if PROP.get("control") and control_scene() else []),
        nb="notebooks/properties_numbers.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=f"{PROP_FIGURES}/properties_numbers.png",
        pdf=f"{PROP_FIGURES}/properties_numbers.pdf",
        csv=f"{PROP_FIGURES}/properties_summary.csv",
        md=f"{PROP_FIGURES}/properties_summary.md",
    params:
        tables=lambda w, input: _list_param(input.tables),
    log:
        f"{LOGS}/figures/properties_numbers.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/properties_numbers.ipynb "
        "-p 'tables={params.tables}' -p out_stem={PROP_FIGURES}/properties_numbers "
        "-p summary_stem={PROP_FIGURES}/properties_summary"


rule fig_properties_filter:
    message: "the qualitative filter against the paper's Tables 4-6"
    input:
        reports=lambda w: [f"{PROP_DIR}/filter/{f}_vs_paper.csv" for f in PROP.get("filter_models", {})],
        nb="notebooks/properties_filter.py",
    output:
        csv=f"{PROP_FIGURES}/properties_filter.csv",
        md=f"{PROP_FIGURES}/properties_filter.md",
    params:
        reports=lambda w, input: _list_param(input.reports),
    log:
        f"{LOGS}/figures/properties_filter.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/properties_filter.ipynb "
        "-p 'reports={params.reports}' -p out_stem={PROP_FIGURES}/properties_filter"


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
        png=f"{PROP_FIGURES}/fig03_properties_{{prop_model}}.png",
        pdf=f"{PROP_FIGURES}/fig03_properties_{{prop_model}}.pdf",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, figure_scene())["root"],
    log:
        f"{LOGS}/figures/fig03_properties_{{prop_model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig03_properties_{wildcards.prop_model}.ipynb "
        "-p table={input.table} -p store={params.store} -p labels_root={params.root} "
        "-p out_stem={PROP_FIGURES}/fig03_properties_{wildcards.prop_model}"


rule fig04_pck:
    message: "Figure 4 analogue (single-activation NN PCK) of {wildcards.prop_model}"
    input:
        table=f"{PROP_DIR}/{{prop_model}}/properties.csv",
        nb="notebooks/fig04_pck.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        png=f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.png",
        pdf=f"{PROP_FIGURES}/fig04_pck_{{prop_model}}.pdf",
    log:
        f"{LOGS}/figures/fig04_pck_{{prop_model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig04_pck_{wildcards.prop_model}.ipynb "
        "-p table={input.table} -p out_stem={PROP_FIGURES}/fig04_pck_{wildcards.prop_model}"


rule fig05_13_scenes:
    message: "Figures 5-13 analogue (PCA maps along the forward order on every scene) of {wildcards.prop_model}"
    input:
        stores=lambda w: _scene_stores(w.prop_model),
        nb="notebooks/fig05_13_scenes.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=PROP_MODEL,
    output:
        png=f"{PROP_FIGURES}/fig05_13_scenes_{{prop_model}}.png",
        pdf=f"{PROP_FIGURES}/fig05_13_scenes_{{prop_model}}.pdf",
    params:
        stores=lambda w, input: _list_param(os.path.dirname(s) for s in input.stores),
        scenes=_list_param(prop_scenes()),
    log:
        f"{LOGS}/figures/fig05_13_scenes_{{prop_model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig05_13_scenes_{wildcards.prop_model}.ipynb "
        "-p 'stores={params.stores}' -p 'scenes={params.scenes}' -p model={wildcards.prop_model} "
        "-p out_stem={PROP_FIGURES}/fig05_13_scenes_{wildcards.prop_model}"


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
        fig16=f"{PROP_FIGURES}/fig16_increments_{{prop_model}}.png",
        fig17=f"{PROP_FIGURES}/fig17_resolution_{{prop_model}}.png",
        fig18=f"{PROP_FIGURES}/fig18_vits_{{prop_model}}.png",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        scene=figure_scene(),
    log:
        f"{LOGS}/figures/fig16_18_{{prop_model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig16_18_{wildcards.prop_model}.ipynb "
        "-p table={input.table} -p store={params.store} -p scene={params.scene} -p model={wildcards.prop_model} "
        "-p out_dir={PROP_FIGURES}"


rule fig15_control:
    message: "Figure 15 analogue: the control U-Net beside the diffusion U-Nets"
    input:
        control=f"{PROP_DIR}/{CONTROL}/properties.csv",
        tables=lambda w: [f"{PROP_DIR}/{m}/properties.csv" for m in prop_models()],
        store=lambda w: prop_store(CONTROL, control_scene()),
        nb="notebooks/fig15_control.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=f"{PROP_FIGURES}/fig15_control.png",
        pdf=f"{PROP_FIGURES}/fig15_control.pdf",
    params:
        tables=lambda w, input: _list_param(input.tables),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/figures/fig15_control.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig15_control.ipynb "
        "-p control={input.control} -p 'tables={params.tables}' -p store={params.store} "
        "-p out_stem={PROP_FIGURES}/fig15_control"
