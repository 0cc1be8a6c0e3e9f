# The three universal properties (paper §4, App. A/E): per-activation numbers, the qualitative filter (§5.1)
# and the property figures. Config → scenes, stores and targets: diffact.workflow.properties.
#
#   results/properties/<model>/<scene>/noise_share.csv   P1: noise share over K diffusion-noise draws
#   results/properties/<model>/<scene>/maps.csv          P2 granularity + P3 locality, from the scene's feature store
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
    message: "P2 granularity and P3 locality of every activation of {wildcards.any_prop_model} on {wildcards.scene}"
    input:
        store=lambda w: wf.properties.store(config, w.any_prop_model, w.scene),
        data=lambda w: wf.dataset_input(config, w.scene),
    wildcard_constraints:
        any_prop_model=wf.properties.any_model_pattern(config),
        scene=wf.properties.scene_pattern(config),
    output:
        wf.properties.path(config, "{any_prop_model}", "{scene}", "maps.csv"),
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, w.scene)["root"],
        sampling=wf.properties.maps_args(config),
        seed=config["seed"],
    log:
        f"{LOGS}/properties/{{any_prop_model}}/{{scene}}/maps.log",
    threads: stage_threads("analysis")
    resources: **stage_resources("analysis")
    conda: ENV
    shell:
        "diffact --log {log} property-maps --store {params.store} --labels-root {params.root} {params.sampling} "
        "--seed {params.seed} --out {output}"


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


# ---- figures (notebooks read results/ only) ------------------------------------------------------------------


rule fig_properties_numbers:
    message: "the three property numbers along the forward order, every model and the control"
    input:
        tables=wf.properties.tables(config, control=True),
        nb="notebooks/properties_numbers.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/properties_numbers.png", caption="../report/fig_properties_numbers_png.rst", category="Properties"),
        pdf=f"{FIGURES}/properties_numbers.pdf",
        csv=report(f"{FIGURES}/properties_summary.csv", caption="../report/fig_properties_numbers_csv.rst", category="Properties"),
        md=f"{FIGURES}/properties_summary.md",
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
        tables=wf.properties.tables(config),
        nb="notebooks/properties_unet_vs_dit.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/properties_unet_vs_dit.png", caption="../report/fig_properties_unet_vs_dit.rst", category="Properties"),
        pdf=f"{FIGURES}/properties_unet_vs_dit.pdf",
        csv=f"{FIGURES}/properties_unet_vs_dit.csv",
        md=f"{FIGURES}/properties_unet_vs_dit.md",
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
        reports=wf.properties.filter_reports(config),
        nb="notebooks/properties_filter.py",
    output:
        csv=report(f"{FIGURES}/properties_filter.csv", caption="../report/fig_properties_filter.rst", category="Properties"),
        md=f"{FIGURES}/properties_filter.md",
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
        table=wf.properties.path(config, "{prop_model}", "properties.csv"),
        store=lambda w: wf.properties.store(config, w.prop_model, wf.properties.figure_scene(config)),
        nb="notebooks/fig03_properties.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        png=report(f"{FIGURES}/fig03_properties_{{prop_model}}.png", caption="../report/fig03_properties.rst", category="Figure 3"),
        pdf=f"{FIGURES}/fig03_properties_{{prop_model}}.pdf",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        root=lambda w: wf.dataset_entry(config, wf.properties.figure_scene(config))["root"],
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
        table=wf.properties.path(config, "{prop_model}", "properties.csv"),
        nb="notebooks/fig04_pck.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        png=report(f"{FIGURES}/fig04_pck_{{prop_model}}.png", caption="../report/fig04_pck_png.rst", category="Figure 4"),
        pdf=f"{FIGURES}/fig04_pck_{{prop_model}}.pdf",
        csv=report(f"{FIGURES}/fig04_pck_{{prop_model}}.csv", caption="../report/fig04_pck_csv.rst", category="Figure 4"),
        md=f"{FIGURES}/fig04_pck_{{prop_model}}.md",
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
        stores=lambda w: wf.properties.scene_stores(config, w.prop_model),
        nb="notebooks/fig05_13_scenes.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        png=report(f"{FIGURES}/fig05_13_scenes_{{prop_model}}.png", caption="../report/fig05_13_scenes.rst", category="Figures 5-13"),
        pdf=f"{FIGURES}/fig05_13_scenes_{{prop_model}}.pdf",
    params:
        stores=lambda w, input: wf.list_param(os.path.dirname(s) for s in input.stores),
        scenes=wf.list_param(wf.properties.scenes(config)),
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
        table=wf.properties.path(config, "{prop_model}", "properties.csv"),
        store=lambda w: wf.properties.store(config, w.prop_model, wf.properties.figure_scene(config)),
        nb="notebooks/fig16_18_within.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        fig16=report(f"{FIGURES}/fig16_increments_{{prop_model}}.png", caption="../report/fig16_18_within_fig16.rst", category="Figures 16-18"),
        fig17=report(f"{FIGURES}/fig17_resolution_{{prop_model}}.png", caption="../report/fig16_18_within_fig17.rst", category="Figures 16-18"),
        fig18=report(f"{FIGURES}/fig18_vits_{{prop_model}}.png", caption="../report/fig16_18_within_fig18.rst", category="Figures 16-18"),
    params:
        store=lambda w, input: os.path.dirname(input.store),
        scene=wf.properties.figure_scene(config),
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
        control=wf.properties.table(config, wf.properties.CONTROL),
        tables=wf.properties.tables(config),
        store=lambda w: wf.properties.store(config, wf.properties.CONTROL, wf.properties.control_scene(config)),
        nb="notebooks/fig15_control.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/fig15_control.png", caption="../report/fig15_control.rst", category="Figure 15"),
        pdf=f"{FIGURES}/fig15_control.pdf",
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
