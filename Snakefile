# diffact: reproduce "Not All Diffusion Model Activations Have Been Evaluated as Discriminative Features".
# `snakemake --cores all` builds everything the active profile (config/config.yaml = demo) can produce.
# Rules are thin: they name inputs/outputs/params and call the `diffact` CLI or a notebook.

# The demo profile, unless a whole profile comes from the command line (`--configfile config/paper.yaml`):
# snakemake would otherwise merge the two, and demo-only entries (built models, demo datasets) would leak in.
if "profile" not in config:

    configfile: "config/config.yaml"

report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# config `preload` (the demo): one process imports torch/diffusers/mmseg for the whole local run, and each job's
# `diffact` runs its command in a fork of it (same command, same bytes; src/diffact/utils/preload.py)
onstart:
    wf.preload.start(config, workflow.local_exec, f"{wf.results_dir(config)}/logs/preload.log")


onsuccess:
    wf.preload.stop()


onerror:
    wf.preload.stop()
# In the paper's order (a stage's figures or second table beside it); no rules file reads a name another rules file
# defines (tests/test_workflow_package.py).
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/properties.smk"
include: "workflow/rules/properties_figures.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/correspondence.smk"
include: "workflow/rules/correspondence_table1.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/scarce.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        wf.targets.all_targets(config),
    default_target: True


rule figures:
    input:
        wf.targets.figure_targets(config),
