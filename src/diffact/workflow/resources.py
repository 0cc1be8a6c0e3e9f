"""Threads and resources per rule, by stage (the config's ``resources`` section)."""

from __future__ import annotations

from diffact.utils.errors import ConfigError

# ---- resources per rule ---------------------------------------------------------------------------------------
# Every rule belongs to one stage; the config's `resources` section sets, per stage, the threads, memory (mem_mb),
# wall time (runtime, minutes) and GPUs (gpu) of each of its jobs, over `resources.default`. Snakemake passes them
# to the executor: `--resources gpu=N` serialises GPU jobs on one workstation, the SLURM plugin turns them into
# --cpus-per-task / --mem / --time / --gpus. Extra keys (e.g. slurm_partition, gpu_model) are passed on as they are.
RESOURCE_STAGES = {
    "default": "light jobs: demo data, merges, tables, the qualitative filter",
    "extract": ("jobs that run a diffusion model: extract, noise_share, control_features, the streamed NN screens "
                "and practical_nn, scarce_filtered_store"),
    "train_unet": "U-Net training: build_demo_model, train_control_unet",
    "corr_train": "Table 1 aggregation-conv training (corr_train)",
    "corr_eval": "Table 1 evaluation (corr_evaluate)",
    "analysis": "CPU screening over feature stores: pck_screen, pck_pixels, property_maps",
    "scarce": "label-scarce runs of a layer set: scarce_set, scarce_table3_run",
    "screen": "label-scarce runs of every filtered activation alone (scarce_screen)",
    "segmentation": "mmseg training and evaluation (Table 2 left)",
    "notebook": "figure and table notebooks",
}
RESOURCE_DEFAULTS = {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0}
# The demo's previous behaviour: model jobs take every core (`all` = snakemake's --cores).
STAGE_DEFAULTS = {"extract": {"threads": "all"}, "train_unet": {"threads": "all"}}


def _stage_settings(config: dict, stage: str) -> tuple[dict, dict]:
    """(merged settings, the stage's own config entry) of one stage."""
    if stage not in RESOURCE_STAGES:
        raise ConfigError(f"unknown resource stage {stage!r}; expected one of {', '.join(RESOURCE_STAGES)}")
    section = config.get("resources") or {}
    own = section.get(stage) or {}
    merged = {**RESOURCE_DEFAULTS, **STAGE_DEFAULTS.get(stage, {}), **(section.get("default") or {}), **own}
    return merged, own


def _threads_setting(config: dict, stage: str, fallback: int | None) -> int | str:
    """A stage's threads as configured: a positive integer or ``all``."""
    merged, own = _stage_settings(config, stage)
    value = own.get("threads", fallback if fallback is not None else merged["threads"])
    if value != "all" and (not isinstance(value, int) or value < 1):
        raise ConfigError(f"resources.{stage}.threads must be a positive integer or 'all', got {value!r}")
    return value


def stage_threads(config: dict, stage: str, cores, fallback: int | None = None) -> int:
    """Threads of a job of ``stage``: the stage's own value, else ``fallback`` (a rule's natural value, e.g. the
    label-scarce protocol's torch threads), else the default. ``all`` means every core snakemake was given
    (``cores``: a number, or a callable asked only then, since snakemake refuses the question when run
    without --cores, e.g. with --summary)."""
    value = _threads_setting(config, stage, fallback)
    return int(cores() if callable(cores) else cores) if value == "all" else value


def demo_model_threads(config: dict) -> int | None:
    """The torch threads a demo model trains with (``demo_models.threads``; `diffact build-demo-model --threads`
    pins them, as the weights' bits depend on the count), which its job reserves so that snakemake runs as many
    builds side by side as the cores allow; None where the profile does not say (the ``train_unet`` stage's
    threads apply, and the command's own default)."""
    return (config.get("demo_models") or {}).get("threads")


def total_cores(workflow) -> int:
    """What ``threads: all`` means for snakemake's ``workflow``: the cores it was given (``--cores``); on a cluster
    executor, which runs without --cores, ``--max-threads`` (the cores of one node). Neither: a ConfigError that
    says which to set (snakemake's own message asks for --cores, which a cluster run does not take)."""
    try:
        return int(workflow.cores)
    except Exception:  # snakemake's WorkflowError: no --cores given
        max_threads = workflow.resource_settings.max_threads
        if max_threads:
            return int(max_threads)
        raise ConfigError("a stage with `threads: all` (resources.<stage>.threads) needs the number of cores: give "
                          "snakemake --cores N, or on a cluster executor --max-threads N (the cores of one node, e.g. "
                          "`max-threads:` in the profile), or give the stage a number of threads") from None


def rule_threads(config: dict, stage: str, cores, fallback: int | None = None):
    """A rule's ``threads:`` for ``stage``: :func:`stage_threads`, except that ``all`` is a function of the job,
    so snakemake asks ``cores()`` when it plans a job rather than when it reads the rules. Commands that plan
    none, like ``snakemake --unlock``, then work without --cores (asking snakemake for its cores without one
    stops the whole workflow with "Workflow requires a total number of cores to be defined")."""
    value = _threads_setting(config, stage, fallback)
    return (lambda wildcards: stage_threads(config, stage, cores, fallback)) if value == "all" else value


def stage_resources(config: dict, stage: str) -> dict:
    """Snakemake ``resources:`` of a job of ``stage`` (everything but threads)."""
    merged, _ = _stage_settings(config, stage)
    return {key: value for key, value in merged.items() if key != "threads"}



def resources_by_stage(config: dict, stages: tuple[str, ...], choose) -> dict:
    """Snakemake ``resources:`` for a rule whose jobs belong to different stages: each value a function of the
    job's wildcards, ``choose(wildcards)`` naming its stage (one of ``stages``). A name that only some stages set
    (e.g. ``slurm_partition`` on ``extract``) is unset (None) for the jobs of the others."""
    per_stage = {stage: stage_resources(config, stage) for stage in stages}
    names = sorted({name for values in per_stage.values() for name in values})
    return {name: (lambda wildcards, name=name: per_stage[choose(wildcards)].get(name)) for name in names}
