"""Helpers the Snakefile calls to turn config into paths and command-line arguments.

Kept here (importable, tested) so the rules stay thin and the store-key logic exists once: the folder
name of a feature store ends with the same key that ``diffact extract --check-key`` recomputes.
"""

from __future__ import annotations

from pathlib import Path

from diffact.extract.pipeline import ExtractionSettings
from diffact.extract.run import store_key
from diffact.utils.errors import ConfigError

RANDOM_SUFFIX = "-random"
DEMO_DATA_MARKERS = {"spair": "Layout/large/test.txt", "ddpmseg": "dataset.json"}


def results_dir(config: dict) -> str:
    return config.get("results", "results")


def model_entry(config: dict, name: str) -> dict:
    """The config entry of a model; ``<built model>-random`` is the same architecture with random weights."""
    models = config["models"]
    if name in models:
        return models[name]
    if name.endswith(RANDOM_SUFFIX) and models.get(name[: -len(RANDOM_SUFFIX)], {}).get("build"):
        base = models[name[: -len(RANDOM_SUFFIX)]]
        return {**base, "source": str(Path(base["source"]).with_name(name)), "random_init": True}
    raise ConfigError(f"unknown model {name!r}; config/models has {', '.join(models)}")


def model_input(config: dict, name: str) -> list[str]:
    """Files a rule must wait for before loading the model (the demo builder's output), or nothing."""
    entry = model_entry(config, name)
    return [f"{entry['source']}/model_index.json"] if entry.get("build") else []


def dataset_entry(config: dict, name: str) -> dict:
    try:
        return config["datasets"][name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; config/datasets has {', '.join(config['datasets'])}") from None


def dataset_input(config: dict, name: str) -> list[str]:
    entry = dataset_entry(config, name)
    return [f"{entry['root']}/{DEMO_DATA_MARKERS[entry['kind']]}"] if entry.get("build") else []


def extraction_settings(config: dict, dataset: str, model: str) -> ExtractionSettings:
    """Global extraction settings, overridden by the model's and then the dataset's (e.g. prompt, image size)."""
    merged = dict(config.get("extraction", {}))
    for entry in (model_entry(config, model), dataset_entry(config, dataset)):
        merged.update(entry.get("extraction", {}))
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
            "--storage-dtype", kw["storage_dtype"],
            "--batch-size", config.get("extraction", {}).get("batch_size", 1)]
    for flag, key in (("--split", "split"), ("--subset", "subset")):
        if ds.get(key):
            args += [flag, ds[key]]
    if kw["model"].get("revision"):
        args += ["--revision", kw["model"]["revision"]]
    return " ".join(shlex.quote(str(a)) for a in args)
