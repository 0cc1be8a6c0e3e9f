# Shared helpers and config validation; nothing else lives here.
from snakemake.utils import validate

from diffact import workflow as wf

validate(config, schema="../../config/schema.yaml")

RESULTS = wf.results_dir(config)
LOGS = f"{RESULTS}/logs"
# Notebooks and diffact run in this environment; a conda env file is declared for --sdm conda users.
ENV = "../envs/diffact.yaml"


def all_targets():
    """Every final output of the active profile."""
    targets = []
    if config.get("correspondence"):
        targets.append(f"{RESULTS}/correspondence/nn_pck_table.csv")
    targets += figure_targets()
    return targets
