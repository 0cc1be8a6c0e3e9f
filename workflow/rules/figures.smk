# Figures and tables: notebooks (notebooks/*.py, jupytext) executed by papermill; they read results/ only.
# `snakemake figures` rebuilds them from cached results without extraction or training.

FIG = config.get("figures", {})


if config.get("correspondence"):
    FIGURE_TARGETS.extend([f"{PAPER_FIGURES}/demo_nn_pck.csv", f"{PAPER_FIGURES}/demo_nn_pck_forward.png"])
if FIG.get("pca_model"):
    FIGURE_TARGETS.append(f"{PAPER_FIGURES}/fig03_pca_{FIG['pca_model']}.png")
if any(m.get("build") for m in config["models"].values()):
    FIGURE_TARGETS.append(f"{PAPER_FIGURES}/demo_loss_curves.png")
# Figure 2 draws a U-Net's levels and ViTs: not planned for DiTs (their catalog is `diffact layers`).
FIGURE_TARGETS.extend(f"{PAPER_FIGURES}/fig02_architecture_{m}.png" for m in config["models"]
                      if not wf.is_transformer(config, m))

rule fig_demo_nn_pck:
    message: "table and plot of the demo NN PCK"
    input:
        table=f"{RESULTS}/correspondence/nn_pck_table.csv",
        nb="notebooks/demo_nn_pck.py",
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{PAPER_FIGURES}/demo_nn_pck.csv",
        md=f"{PAPER_FIGURES}/demo_nn_pck.md",
        png=report(f"{PAPER_FIGURES}/demo_nn_pck_forward.png", caption="../report/fig_demo_nn_pck.rst", category="Demo"),
        pdf=f"{PAPER_FIGURES}/demo_nn_pck_forward.pdf",
    params:
        rulename="fig_demo_nn_pck",
        executed=f"{RESULTS}/notebooks/demo_nn_pck.ipynb",
        out_stem=lambda w, output: output.csv.removesuffix(".csv"),
    log:
        f"{LOGS}/figures/demo_nn_pck.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p table={input.table} -p out_stem={params.out_stem}"


rule fig03_pca:
    message: "PCA maps (Figure 3 style) of {wildcards.model}"
    input:
        store=lambda w: wf.store_done(config, FIG.get("pca_dataset", CORR.get("dataset")), w.model,
                                      FIG.get("layer_set", CORR.get("layer_set", "figure"))),
        nb="notebooks/fig03_pca.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PAPER_FIGURES}/fig03_pca_{{model}}.png", caption="../report/fig03_pca.rst", category="Figure 3"),
        pdf=f"{PAPER_FIGURES}/fig03_pca_{{model}}.pdf",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w: wf.list_param(FIG.get("pca_layers", [])),
        n=FIG.get("pca_images", 2),
        rulename="fig03_pca",
        executed=lambda w: f"{RESULTS}/notebooks/fig03_pca_{w.model}.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig03_pca_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p store={params.store} -p 'layers={params.layers}' -p n_images={params.n} "
        "-p out_stem={params.out_stem}"


rule fig_demo_loss:
    message: "loss curves of the demo models"
    input:
        curves=[f"{RESULTS}/models/{m}.loss.csv" for m, e in config["models"].items() if e.get("build")],
        nb="notebooks/demo_loss_curves.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PAPER_FIGURES}/demo_loss_curves.png", caption="../report/fig_demo_loss.rst", category="Demo"),
        pdf=f"{PAPER_FIGURES}/demo_loss_curves.pdf",
    params:
        curves=lambda w, input: wf.list_param(input.curves),
        rulename="fig_demo_loss",
        executed=f"{RESULTS}/notebooks/demo_loss_curves.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/demo_loss_curves.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'curves={params.curves}' -p out_stem={params.out_stem}"


rule fig02_architecture:
    message: "Figure 2: the block structure of {wildcards.model}"
    input:
        model=lambda w: wf.model_input(config, w.model),
        nb="notebooks/fig02_architecture.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=report(f"{PAPER_FIGURES}/fig02_architecture_{{model}}.png", caption="../report/fig02_architecture.rst", category="Figure 2"),
        pdf=f"{PAPER_FIGURES}/fig02_architecture_{{model}}.pdf",
    params:
        ref=lambda w: wf.model_entry(config, w.model)["source"],
        rulename="fig02_architecture",
        executed=lambda w: f"{RESULTS}/notebooks/fig02_architecture_{w.model}.ipynb",
        out_stem=lambda w, output: output.png.removesuffix(".png"),
    log:
        f"{LOGS}/figures/fig02_architecture_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} "
        "--executed {params.executed} "
        "-p model_ref={params.ref} -p model={wildcards.model} -p out_stem={params.out_stem}"


# The index of all 24 paper items; listed last so it sees every figure target of every rules file.
rule figures_index:
    message: "paper_figures/README.md: the index of the paper's figures and tables"
    input:
        figures=list(FIGURE_TARGETS),
        paper_items="src/diffact/viz/paper_items.yaml",
    output:
        f"{PAPER_FIGURES}/README.md",
    params:
        profile=lambda w: config.get("profile", "demo"),  # a function: "paper" is a prefix of paper_figures/ (lint)
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


FIGURE_TARGETS.append(f"{PAPER_FIGURES}/README.md")
TARGETS.extend(FIGURE_TARGETS)
