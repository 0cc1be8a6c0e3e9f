"""Everything a profile builds: each stage's final outputs and every figure and table, in the profile's own figures
folder (:func:`diffact.workflow.profile.figures_dir`) with the index (README.md) that lists them.

Each stage module names its own targets (``targets``) and figures (``figure_names``); gathering them here means that
`snakemake`, `snakemake figures` and the index's inputs are known without reading the rule files in any order.
"""

from __future__ import annotations

from diffact.workflow import compare, correspondence, figures, properties, scarce, segmentation
from diffact.workflow.profile import figures_dir

# In the paper's order.
STAGES = (properties, compare, correspondence, segmentation, scarce, figures)
INDEX = "README.md"  # written by `diffact figures-index` into the figures folder


def index(config: dict) -> str:
    return f"{figures_dir(config)}/{INDEX}"


def figure_targets(config: dict, with_index: bool = True) -> list[str]:
    """Every figure and table the profile makes (what `snakemake figures` rebuilds from cached results), with the
    index last unless ``with_index=False`` (the index's own inputs)."""
    folder = figures_dir(config)
    names = [name for stage in STAGES for name in stage.figure_names(config)]
    return [f"{folder}/{name}" for name in names] + ([index(config)] if with_index else [])


def all_targets(config: dict) -> list[str]:
    """Everything `snakemake` builds for the profile: each stage's final outputs and every figure."""
    return [t for stage in STAGES for t in stage.targets(config)] + figure_targets(config)
