# Shared helpers and config validation; nothing else lives here.
from snakemake.utils import validate

from diffact import workflow as wf

validate(config, schema="../../config/schema.yaml")

RESULTS = wf.results_dir(config)
LOGS = f"{RESULTS}/logs"
# Notebooks and diffact run in this environment; a conda env file is declared for --sdm conda users.
ENV = "../envs/diffact.yaml"


# Each rules file appends its final outputs: TARGETS (everything `snakemake` builds) and FIGURE_TARGETS
# (what `snakemake figures` rebuilds from cached results; these are also in TARGETS).
TARGETS = []
FIGURE_TARGETS = []
