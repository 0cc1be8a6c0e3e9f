"""Figures and tables (workflow/rules/figures.smk): the ``figures`` section of a profile → the figures that belong to
no single stage (Figure 2's diagrams, the PCA maps, the demo loss curves). Every stage's figures, and the index
that lists them, are gathered by :mod:`diffact.workflow.targets`.
"""

from __future__ import annotations

from diffact.workflow import correspondence
from diffact.workflow.extract import extract_args
from diffact.workflow.profile import is_transformer, results_dir

DEFAULT_PCA_SET = "figure"
DEFAULT_PCA_IMAGES = 2


def section(config: dict) -> dict:
    return config.get("figures") or {}


def pca_store_args(config: dict, model: str) -> str:
    """The `diffact extract` arguments of the store whose features the PCA maps show (figures.pca_dataset /
    figures.layer_set, else the correspondence screen's): pca_maps streams them, the store is never written."""
    fig, corr = section(config), correspondence.section(config)
    dataset = fig.get("pca_dataset", corr.get("dataset"))
    return extract_args(config, dataset, model, fig.get("layer_set", corr.get("layer_set", DEFAULT_PCA_SET)))


def pca_dataset(config: dict) -> str:
    return section(config).get("pca_dataset", correspondence.section(config).get("dataset"))


def pca_maps(config: dict, model: str) -> str:
    """The PCA maps of Fig 3 (style) that pca_maps writes and fig03_pca draws (diffact.viz.figure_maps)."""
    return f"{results_dir(config)}/figure_maps/pca_{model}.npz"


def pca_show_arg(config: dict) -> str:
    """``--show LAYER ...`` of diffact figure-maps: figures.pca_layers (none: every activation of the set)."""
    layers = section(config).get("pca_layers", [])
    return " ".join(["--show", *layers]) if layers else ""


def pca_images(config: dict) -> int:
    return section(config).get("pca_images", DEFAULT_PCA_IMAGES)


def built_models(config: dict) -> list[str]:
    """The models the workflow builds and trains (the demo's), whose loss curves it draws."""
    return [m for m, entry in config["models"].items() if entry.get("build")]


def loss_curves(config: dict) -> list[str]:
    return [f"{results_dir(config)}/models/{m}.loss.csv" for m in built_models(config)]


def architecture_models(config: dict) -> list[str]:
    """Figure 2 draws a U-Net's levels and ViTs: not planned for DiTs (their catalog is `diffact layers`)."""
    return [m for m in config["models"] if not is_transformer(config, m)]


def figure_names(config: dict) -> list[str]:
    """This stage's own figures, as file names in the profile's figures folder."""
    names = [f"fig03_pca_{section(config)['pca_model']}.png"] if section(config).get("pca_model") else []
    names += ["demo_loss_curves.png"] if built_models(config) else []
    return names + [f"fig02_architecture_{m}.png" for m in architecture_models(config)]


def targets(config: dict) -> list[str]:
    """This stage's outputs are all figures (:func:`figure_names`)."""
    return []


# ---- the notebook rules' one template -------------------------------------------------------------------------
NOTEBOOK_COMMAND = "diffact --log {log} notebook {input.nb} --inputs {input} --outputs {output}"


def notebook_shell(config: dict, rule: str, *params: str) -> str:
    """The shell command of notebook rule ``rule``: `diffact notebook` names the executed notebook after the rule's
    first output (in <results>/notebooks/) and sets ``out_stem`` to that output without its extension, so a rule
    states only its own parameters (``-p key={input.x}``, snakemake's placeholders). The rule's name is recorded in
    the provenance file the figures index reads (snakemake's own ``{rule}`` in a shell command fails its linter)."""
    return " ".join([NOTEBOOK_COMMAND, f"--rule {rule} --executed-dir {results_dir(config)}/notebooks", *params])
