# Figures and tables: notebooks (notebooks/*.py, jupytext) executed by papermill; they read results/ only.
# `snakemake figures` rebuilds them from cached results without extraction or training.

FIG = config.get("figures", {})
PAPER_FIGURES = "paper_figures"


if config.get("correspondence"):
    FIGURE_TARGETS.extend([f"{PAPER_FIGURES}/demo_nn_pck.csv", f"{PAPER_FIGURES}/demo_nn_pck_forward.png"])
if FIG.get("pca_model"):
    FIGURE_TARGETS.append(f"{PAPER_FIGURES}/fig03_pca_{FIG['pca_model']}.png")
if any(m.get("build") for m in config["models"].values()):
    FIGURE_TARGETS.append(f"{PAPER_FIGURES}/demo_loss_curves.png")
TARGETS.extend(FIGURE_TARGETS)

rule fig_demo_nn_pck:
    message: "table and plot of the demo NN PCK"
    input:
        table=f"{RESULTS}/correspondence/nn_pck_table.csv",
        nb="notebooks/demo_nn_pck.py",
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{PAPER_FIGURES}/demo_nn_pck.csv",
        md=f"{PAPER_FIGURES}/demo_nn_pck.md",
        png=f"{PAPER_FIGURES}/demo_nn_pck_forward.png",
        pdf=f"{PAPER_FIGURES}/demo_nn_pck_forward.pdf",
    log:
        f"{LOGS}/figures/demo_nn_pck.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/demo_nn_pck.ipynb "
        "-p table={input.table} -p out_stem={PAPER_FIGURES}/demo_nn_pck"


rule fig03_pca:
    message: "PCA maps (Figure 3 style) of {wildcards.model}"
    input:
        store=lambda w: wf.store_done(config, FIG.get("pca_dataset", CORR.get("dataset")), w.model,
                                      CORR.get("layer_set", "figure")),
        nb="notebooks/fig03_pca.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=f"{PAPER_FIGURES}/fig03_pca_{{model}}.png",
        pdf=f"{PAPER_FIGURES}/fig03_pca_{{model}}.pdf",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w: "[" + ",".join(FIG.get("pca_layers", [])) + "]",
        n=FIG.get("pca_images", 2),
    log:
        f"{LOGS}/figures/fig03_pca_{{model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/fig03_pca_{wildcards.model}.ipynb "
        "-p store={params.store} -p 'layers={params.layers}' -p n_images={params.n} "
        "-p out_stem={PAPER_FIGURES}/fig03_pca_{wildcards.model}"


rule fig_demo_loss:
    message: "loss curves of the demo models"
    input:
        curves=[f"{RESULTS}/models/{m}.loss.csv" for m, e in config["models"].items() if e.get("build")],
        nb="notebooks/demo_loss_curves.py",
        theme="src/diffact/viz/theme.py",
    output:
        png=f"{PAPER_FIGURES}/demo_loss_curves.png",
        pdf=f"{PAPER_FIGURES}/demo_loss_curves.pdf",
    params:
        curves=lambda w, input: "[" + ",".join(input.curves) + "]",
    log:
        f"{LOGS}/figures/demo_loss_curves.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/demo_loss_curves.ipynb "
        "-p 'curves={params.curves}' -p out_stem={PAPER_FIGURES}/demo_loss_curves"
