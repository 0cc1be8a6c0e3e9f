"""Feature stores: the extraction settings of a (dataset, model) pair, the store folder whose name ends with the key
``diffact extract --check-key`` recomputes, the ``diffact extract`` arguments, and sharding (workflow/rules/extract.smk).
"""

from __future__ import annotations

from diffact.extract.settings import ExtractionSettings, store_key
from diffact.workflow.profile import dataset_entry, model_entry, results_dir, spair_subset_args, split_noise_draw
from diffact.utils.errors import ConfigError


def extraction_settings(config: dict, dataset: str, model: str) -> ExtractionSettings:
    """Global extraction settings, overridden by the model's and then the dataset's (e.g. prompt, image size);
    noise draw k of a dataset (:func:`noise_draw_dataset`) adds k to the noise seed."""
    merged = dict(config.get("extraction", {}))
    for entry in (model_entry(config, model), dataset_entry(config, dataset)):
        merged.update(entry.get("extraction", {}))
    merged["noise_seed"] = int(merged.get("noise_seed", ExtractionSettings.noise_seed)) + split_noise_draw(config, dataset)[1]
    fields = ExtractionSettings.__dataclass_fields__
    return ExtractionSettings(**{k: v for k, v in merged.items() if k in fields})


def _store_settings_kwargs(config: dict, dataset: str, model: str, layer_set: str) -> dict:
    entry = model_entry(config, model)
    return dict(dataset=dataset_entry(config, dataset), model=entry, family=entry["family"], layer_set=layer_set,
                extraction=extraction_settings(config, dataset, model),
                storage_dtype=config.get("extraction", {}).get("storage_dtype", "float32"))


def store_dir(config: dict, dataset: str, model: str, layer_set: str) -> str:
    key = store_key(**_store_settings_kwargs(config, dataset, model, layer_set))
    return f"{results_dir(config)}/features/{dataset}/{model}/{layer_set}-{key}"


def store_done(config: dict, dataset: str, model: str, layer_set: str) -> str:
    return f"{store_dir(config, dataset, model, layer_set)}/complete.json"


def extract_args(config: dict, dataset: str, model: str, layer_set: str) -> str:
    """The ``diffact extract`` arguments for one store (quoted for the shell)."""
    import shlex

    kw = _store_settings_kwargs(config, dataset, model, layer_set)
    ds, ex = kw["dataset"], kw["extraction"]
    args = ["--model", kw["model"]["source"], "--family", kw["family"], "--layers", layer_set,
            "--dataset-kind", ds["kind"], "--dataset-root", ds["root"],
            "--t", ex.t, "--prompt", ex.prompt, "--image-size", ex.image_size, "--noise-seed", ex.noise_seed,
            "--ensemble", ex.ensemble, "--vae-mode", ex.vae_mode, "--dtype", ex.dtype,
            "--resize", ex.resize, "--inversion", ex.inversion, "--inversion-steps", ex.inversion_steps,
            "--storage-dtype", kw["storage_dtype"],
            "--batch-size", config.get("extraction", {}).get("batch_size", 1)]
    if config.get("extraction", {}).get("torch_threads"):
        args += ["--torch-threads", config["extraction"]["torch_threads"]]
    for flag, key in (("--split", "split"), ("--subset", "subset")):
        if ds.get(key):
            args += [flag, ds[key]]
    for flag, key in (("--revision", "revision"), ("--variant", "variant")):
        if kw["model"].get(key):
            args += [flag, kw["model"][key]]
    if ds.get("subset"):  # the policy only matters where a subset is read
        args += spair_subset_args(config, dataset).split()
    return " ".join(shlex.quote(str(a)) for a in args)


def pinned_threads_args(config: dict) -> str:
    """``--threads N`` when the profile pins torch's CPU threads (``extraction.torch_threads``), else nothing. For the
    jobs that run torch on stored or built features without ``diffact extract``'s arguments (which carry
    ``--torch-threads``): the control U-Net's store and its noise share. Their bytes then
    follow the profile, not the job's ``threads`` (its stage's, or ``--cores`` for ``all``), as the stores' do
    (docs/determinism.md)."""
    threads = config.get("extraction", {}).get("torch_threads")
    return f"--threads {threads}" if threads else ""


def extraction_shards(config: dict, dataset: str | None = None, model: str | None = None,
                      layer_set: str | None = None) -> int:
    """How many jobs fill one feature store (1: a single extract job): ``extraction.shards``, or for the store
    ``<dataset>/<model>/<layer set>`` its entry in ``extraction.shards_by_store`` (the rehearsal shards one small
    store, so that every rule of the sharded paper DAG runs without loading each full-size model twice per store)."""
    extraction = config.get("extraction", {})
    shards = extraction.get("shards", 1)
    if dataset is not None:
        shards = (extraction.get("shards_by_store") or {}).get(f"{dataset}/{model}/{layer_set}", shards)
    if not isinstance(shards, int) or shards < 1:
        where = "extraction.shards" if dataset is None else f"the shards of store {dataset}/{model}/{layer_set}"
        raise ConfigError(f"{where} must be an integer ≥ 1, got {shards!r}")
    return shards


def extract_rule_stage(config: dict) -> str | None:
    """The resource stage of every `extract` job when all stores shard alike (static resources, as the paper
    profile has them); None when ``extraction.shards_by_store`` mixes merge-only and extracting jobs, whose stage
    is then chosen per job (:func:`extract_stage`)."""
    if (config.get("extraction") or {}).get("shards_by_store"):
        return None
    return "default" if extraction_shards(config) > 1 else "extract"


def extract_stage(config: dict, dataset: str, model: str, layer_set: str) -> str:
    """The resource stage of a store's `extract` job: sharded, it only merges (``default``); else it runs the
    model (``extract``)."""
    return "default" if extraction_shards(config, dataset, model, layer_set) > 1 else "extract"


def shard_receipts(config: dict, dataset: str, model: str, layer_set: str, store: str) -> list[str]:
    """The files the shard jobs of a store write when done (``<store>.parts/I-of-N.json``); none unsharded."""
    shards = extraction_shards(config, dataset, model, layer_set)
    return [] if shards == 1 else [f"{store}.parts/{i}-of-{shards}.json" for i in range(1, shards + 1)]


def extract_rule_threads(config: dict, cores):
    """``threads:`` of the `extract` rule: its one stage's when every store shards alike, else chosen per job
    (a merge-only job is light, an unsharded one runs the model)."""
    from diffact.workflow.resources import rule_threads, stage_threads

    stage = extract_rule_stage(config)
    if stage:
        return rule_threads(config, stage, cores)
    return lambda w: stage_threads(config, extract_stage(config, w.dataset, w.model, w.layerset), cores=cores)


def extract_rule_resources(config: dict) -> dict:
    """``resources:`` of the `extract` rule (see :func:`extract_rule_threads`)."""
    from diffact.workflow.resources import resources_by_stage, stage_resources

    stage = extract_rule_stage(config)
    if stage:
        return stage_resources(config, stage)
    return resources_by_stage(config, ("default", "extract"),
                              lambda w: extract_stage(config, w.dataset, w.model, w.layerset))
