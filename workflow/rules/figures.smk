# Figures and tables: notebooks (notebooks/*.py, jupytext) executed by papermill; they read results/ only and write
# into the profile's own folder (paper_figures/<profile>/). `snakemake figures` rebuilds them from cached results
# without extraction or training. Figure targets: diffact.workflow.targets; this file's own: .figures.


rule fig_demo_nn_pck:
    message: "table and plot of the demo NN PCK"
    input:
        table=f"{RESULTS}/correspondence/nn_pck_table.csv",
        nb="notebooks/demo_nn_pck.py",
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{FIGURES}/demo_nn_pck.csv",
        md=f"{FIGURES}/demo_nn_pck.md",
        png=report(f"{FIGURES}/demo_nn_pck_forward.png", caption="../report/fig_demo_nn_pck.rst", category="Demo"),
        pdf=f"{FIGURES}/demo_nn_pck_forward.pdf",
    log:
        f"{LOGS}/figures/demo_nn_pck.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig_demo_nn_pck", "-p table={input.table}")


# The maps Fig 3 (style) shows, streamed from the model with its store's own arguments (the store is not written).
rule pca_maps:
    message: "PCA maps (Figure 3 style) of {wildcards.model}, streamed"
    input:
        model=lambda w: wf.model_input(config, w.model),
        data=lambda w: wf.dataset_input(config, wf.figures.pca_dataset(config)),
    output:
        f"{RESULTS}/figure_maps/pca_{{model}}.npz",
    params:
        args=lambda w: wf.figures.pca_store_args(config, w.model),
        show=wf.figures.pca_show_arg(config),
        n=wf.figures.pca_images(config),
    log:
        f"{LOGS}/figures/pca_maps_{{model}}.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} figure-maps {params.args} {params.show} --images {params.n} --out {output}"


rule fig03_pca:
    message: "PCA maps (Figure 3 style) of {wildcards.model}"
    input:
        maps=lambda w: wf.figures.pca_maps(config, w.model),
        nb="notebooks/fig03_pca.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/fig03_pca_{{model}}.png", caption="../report/fig03_pca.rst", category="Figure 3"),
        pdf=f"{FIGURES}/fig03_pca_{{model}}.pdf",
    log:
        f"{LOGS}/figures/fig03_pca_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig03_pca", "-p maps={input.maps}")


rule fig_demo_loss:
    message: "loss curves of the demo models"
    input:
        curves=wf.figures.loss_curves(config),
        nb="notebooks/demo_loss_curves.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/demo_loss_curves.png", caption="../report/fig_demo_loss.rst", category="Demo"),
        pdf=f"{FIGURES}/demo_loss_curves.pdf",
    params:
        curves=lambda w, input: wf.list_param(input.curves),
    log:
        f"{LOGS}/figures/demo_loss_curves.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "fig_demo_loss", "-p 'curves={params.curves}'")


rule fig02_architecture:
    message: "Figure 2: the block structure of {wildcards.model}"
    input:
        model=lambda w: wf.model_input(config, w.model),
        nb="notebooks/fig02_architecture.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{FIGURES}/fig02_architecture_{{model}}.png", caption="../report/fig02_architecture.rst", category="Figure 2"),
        pdf=f"{FIGURES}/fig02_architecture_{{model}}.pdf",
    params:
        ref=lambda w: wf.model_entry(config, w.model)["source"],
    log:
        f"{LOGS}/figures/fig02_architecture_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "fig02_architecture", "-p model_ref={params.ref}", "-p model={wildcards.model}")


# The index of all 24 paper items, beside the profile's figures.
rule figures_index:
    message: "the index of the paper's figures and tables (README.md beside them)"
    input:
        figures=wf.targets.figure_targets(config, with_index=False),
        paper_items="src/diffact/viz/paper_items.yaml",
    output:
        wf.targets.index(config),
    params:
        profile=lambda w: wf.profile_name(config),  # a function: "paper" is a prefix of paper_figures/ (lint)
        figures=lambda w, output: os.path.dirname(output[0]),
        provenance=f"{RESULTS}/notebooks",
    log:
        f"{LOGS}/figures/figures_index.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} figures-index --figures {params.figures} --provenance {params.provenance} "
        "--profile {params.profile} --out {output}"

