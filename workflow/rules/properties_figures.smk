# The property figures (paper Figs 3-5, 15-18 analogues) and the summary tables, from the property tables and the
# figure maps that properties.smk makes (no feature store): notebooks (notebooks/*.py) that read results/ only.
# Which of them a profile makes: diffact.workflow.properties.figure_names.


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
        summary_stem=lambda w, output: output.csv.removesuffix(".csv"),
    log:
        f"{LOGS}/figures/properties_numbers.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig_properties_numbers", "-p 'tables={params.tables}'", "-p summary_stem={params.summary_stem}")


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
    log:
        f"{LOGS}/figures/properties_unet_vs_dit.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig_properties_unet_vs_dit", "-p 'tables={params.tables}'")


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
    log:
        f"{LOGS}/figures/properties_filter.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig_properties_filter", "-p 'reports={params.reports}'")


rule fig03_properties:
    message: "Figure 3 analogue (noise, granularity, locality maps) of {wildcards.prop_model}"
    input:
        table=wf.properties.path(config, "{prop_model}", "properties.csv"),
        maps=lambda w: wf.properties.figure_maps(config, w.prop_model, wf.properties.figure_scene(config)),
        nb="notebooks/fig03_properties.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        png=report(f"{FIGURES}/fig03_properties_{{prop_model}}.png", caption="../report/fig03_properties.rst", category="Figure 3"),
        pdf=f"{FIGURES}/fig03_properties_{{prop_model}}.pdf",
    log:
        f"{LOGS}/figures/fig03_properties_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig03_properties", "-p table={input.table}", "-p maps={input.maps}")


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
    log:
        f"{LOGS}/figures/fig04_pck_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig04_pck", "-p table={input.table}")


rule fig05_13_scenes:
    message: "Figures 5-13 analogue (PCA maps along the forward order on every scene) of {wildcards.prop_model}"
    input:
        maps=lambda w: wf.properties.scene_figure_maps(config, w.prop_model),
        nb="notebooks/fig05_13_scenes.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        png=report(f"{FIGURES}/fig05_13_scenes_{{prop_model}}.png", caption="../report/fig05_13_scenes.rst", category="Figures 5-13"),
        pdf=f"{FIGURES}/fig05_13_scenes_{{prop_model}}.pdf",
    params:
        maps=lambda w, input: wf.list_param(input.maps),
        scenes=wf.list_param(wf.properties.scenes(config)),
    log:
        f"{LOGS}/figures/fig05_13_scenes_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig05_13_scenes", "-p 'maps={params.maps}'", "-p 'scenes={params.scenes}'",
            "-p model={wildcards.prop_model}")


rule fig16_18_within:
    message: "Figures 16-18 analogues (increments, granularity within a resolution and across its ViTs) of {wildcards.prop_model}"
    input:
        table=wf.properties.path(config, "{prop_model}", "properties.csv"),
        maps=lambda w: wf.properties.figure_maps(config, w.prop_model, wf.properties.figure_scene(config)),
        nb="notebooks/fig16_18_within.py",
        theme="src/diffact/viz/theme.py",
    wildcard_constraints:
        prop_model=wf.properties.model_pattern(config),
    output:
        fig16=report(f"{FIGURES}/fig16_increments_{{prop_model}}.png", caption="../report/fig16_18_within_fig16.rst", category="Figures 16-18"),
        fig17=report(f"{FIGURES}/fig17_resolution_{{prop_model}}.png", caption="../report/fig16_18_within_fig17.rst", category="Figures 16-18"),
        fig18=report(f"{FIGURES}/fig18_vits_{{prop_model}}.png", caption="../report/fig16_18_within_fig18.rst", category="Figures 16-18"),
    params:
        scene=wf.properties.figure_scene(config),
        out_dir=lambda w, output: os.path.dirname(output.fig16),
    log:
        f"{LOGS}/figures/fig16_18_{{prop_model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig16_18_within", "-p table={input.table}", "-p maps={input.maps}",
            "-p scene={params.scene}", "-p model={wildcards.prop_model}", "-p out_dir={params.out_dir}")


rule fig15_control:
    message: "Figure 15 analogue: the control U-Net beside the diffusion U-Nets"
    input:
        control=wf.properties.table(config, wf.properties.CONTROL),
        tables=wf.properties.tables(config),
        maps=lambda w: wf.properties.figure_maps(config, wf.properties.CONTROL, wf.properties.control_scene(config)),
        nb="notebooks/fig15_control.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/fig15_control.png", caption="../report/fig15_control.rst", category="Figure 15"),
        pdf=f"{FIGURES}/fig15_control.pdf",
    params:
        tables=lambda w, input: wf.list_param(input.tables),
    log:
        f"{LOGS}/figures/fig15_control.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig15_control", "-p control={input.control}", "-p 'tables={params.tables}'",
            "-p maps={input.maps}")
