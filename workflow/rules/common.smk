# The one shared preamble of every rules file (config validation, the folders, the conda env, threads and resources
# per stage). Every other name the rules files use comes from diffact.workflow (`wf`), which turns the config into
# targets, paths and arguments (one module per stage, tested without snakemake). No rules file reads a name another
# rules file defines.
import os
import sys

from snakemake.utils import validate

from diffact import workflow as wf
from diffact.utils.errors import ConfigError

# A derived profile (`base: config/paper.yaml`, e.g. the rehearsal) is its base with its own keys on top.
config.update(wf.resolve_base(config, where="--configfile"))
config.pop("base", None)

validate(config, schema="../../config/schema.yaml")
# Every name the profile uses for another entry (models, datasets, layer sets, scenes, shards_by_store stores, ...)
# must exist: a bad one stops here, before any job runs, in one line naming where it is and the known names
# (rather than a traceback from whichever rule file reads it first).
try:
    wf.check_references(config)
except ConfigError as err:
    sys.exit(f"config error: {err}")

# Jobs call the `diffact` console script of the environment snakemake runs in, even when that
# environment's bin/ is not on PATH (e.g. `.venv/bin/snakemake` without activating the venv).
# (update() rather than item assignment: the linter reads `os.environ[...]` as a variable the user must set.)
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))

RESULTS = wf.results_dir(config)
# Regenerated figures and tables, one folder per profile (`paper_figures/<profile>/`; the rehearsal keeps its
# meaningless ones under its results).
FIGURES = wf.figures_dir(config)
# A profile may name its own Hugging Face hub cache (the rehearsal's stand-in models); jobs inherit it.
wf.apply_hub_cache(config)
LOGS = f"{RESULTS}/logs"
# Notebooks and diffact run in this environment; a conda env file is declared for --sdm conda users.
ENV = "../envs/diffact.yaml"


# Threads and resources per rule, by stage (the config's `resources` section; see diffact.workflow.RESOURCE_STAGES).
# Each job declares `threads: stage_threads("extract")` and `resources: **stage_resources("extract")`.
# `threads: all` is asked of snakemake per job (wf.rule_threads), so `snakemake --unlock` needs no --cores.
def job_cores():
    return wf.total_cores(workflow)


def stage_threads(stage, fallback=None):
    return wf.rule_threads(config, stage, cores=job_cores, fallback=fallback)


def stage_resources(stage):
    return wf.stage_resources(config, stage)
