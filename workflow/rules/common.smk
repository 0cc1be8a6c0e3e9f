# Shared helpers and config validation; nothing else lives here.
import os
import sys

from snakemake.utils import validate

from diffact import workflow as wf

validate(config, schema="../../config/schema.yaml")

# Jobs call the `diffact` console script of the environment snakemake runs in, even when that
# environment's bin/ is not on PATH (e.g. `.venv/bin/snakemake` without activating the venv).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

RESULTS = wf.results_dir(config)
LOGS = f"{RESULTS}/logs"
# Notebooks and diffact run in this environment; a conda env file is declared for --sdm conda users.
ENV = "../envs/diffact.yaml"


# Each rules file appends its final outputs: TARGETS (everything `snakemake` builds) and FIGURE_TARGETS
# (what `snakemake figures` rebuilds from cached results; these are also in TARGETS).
TARGETS = []
FIGURE_TARGETS = []
