"""The workflow's config-to-arguments layer: a validated profile (the config mapping) → targets, paths and the
arguments of each rule, importable and tested without Snakemake. The rule files (workflow/rules/*.smk) only
declare rules and call these functions with ``config``.

One module per stage, in the paper's order: :mod:`.profile` (reading a profile, its models and datasets),
:mod:`.resources` (threads and resources per stage), :mod:`.references` (cross-references checked at load),
:mod:`.extract` (feature stores), :mod:`.properties`, :mod:`.compare`, :mod:`.correspondence`,
:mod:`.segmentation`, :mod:`.scarce`, :mod:`.figures`; :mod:`.targets` gathers every stage's final outputs
and figures, :mod:`.stores` every feature store they read (and the extract-group jobs that write them);
:mod:`.preload` starts and stops a local run's preload server (the Snakefile's onstart/onsuccess/onerror).

The shared helpers of the first four are re-exported here (``from diffact import workflow as wf``;
``wf.store_done(...)``); the stage modules are used by name (``wf.scarce.dataset_args(config, "simple")``).
"""

from diffact.workflow.extract import *  # noqa: F403
from diffact.workflow.profile import *  # noqa: F403
from diffact.workflow.references import *  # noqa: F403
from diffact.workflow.resources import *  # noqa: F403

# The stage modules, used as wf.<stage>.<function>(config, ...) by the rule files (after the shared helpers above,
# which they import).
from diffact.workflow import compare, correspondence, figures, preload, properties, scarce, segmentation, stores, targets  # noqa: E402, F401
