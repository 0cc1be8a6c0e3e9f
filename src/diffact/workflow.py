"""Helpers the Snakefile calls to turn config into paths and command-line arguments.

Kept here (importable, tested) so the rules stay thin and the store-key logic exists once: the folder
name of a feature store ends with the same key that ``diffact extract --check-key`` recomputes.
"""

from __future__ import annotations

import re
from pathlib import Path

from diffact.extract.pipeline import ExtractionSettings
from diffact.extract.run import store_key
from diffact.utils.errors import ConfigError

RANDOM_SUFFIX = "-random"
DEMO_DATA_MARKERS = {"spair": "Layout/large/test.txt", "ddpmseg": "dataset.json"}


def list_param(items) -> str:
    """A list as one notebook parameter (``-p 'key=[a,b]'``, read back as YAML by ``diffact notebook``)."""
    return "[" + ",".join(str(i) for i in items) + "]"


def results_dir(config: dict) -> str:
    return config.get("results", "results")


def read_profile(path: str | Path) -> dict:
    """A profile file as a config mapping, its ``base:`` profile merged underneath (see :func:`resolve_base`);
    one clear ConfigError for a missing file, bad YAML or a non-mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections")
    return resolve_base(config, where=str(path), near=path.resolve().parent.parent)


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` on top: mappings merge key by key, everything else (lists included) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_base(config: dict, where: str = "config", near: Path | None = None) -> dict:
    """A profile that says ``base: config/paper.yaml`` is that profile with its own keys on top, so that a
    derived profile (the rehearsal) states only what it changes and cannot drift from its base. The path is
    relative to the working directory (the repository root, where snakemake runs), else to ``near`` (the
    repository a profile file read by :func:`read_profile` lives in)."""
    base = config.get("base")
    if not base:
        return config
    if not Path(base).is_file() and near is not None and (near / base).is_file():
        base = near / base
    if not Path(base).is_file():
        raise ConfigError(f"{where}: base profile {base!r} does not exist (paths are relative to the repository root)")
    own = {key: value for key, value in config.items() if key != "base"}
    return deep_merge(read_profile(base), own)


def figures_dir(config: dict) -> str:
    """Where the profile's notebooks write figures and tables (default ``paper_figures``)."""
    return config.get("paper_figures", "paper_figures")


def apply_hub_cache(config: dict) -> str | None:
    """Point huggingface_hub at the profile's ``hub_cache`` (if it names one) for this process and the jobs it
    starts: the rehearsal loads its stand-in models from there by hub id; real profiles leave the user's cache."""
    import os

    cache = config.get("hub_cache")
    if cache:
        os.environ["HF_HUB_CACHE"] = os.path.abspath(cache)
    return cache


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


# Noise draw k > 0 of a dataset's stores is the dataset named ``<dataset>.draw<k>``: the same images, extracted with
# noise_seed + k (a fresh VAE sample and fresh diffusion noise; correspondence.table1.noise: draws).
NOISE_DRAW_SEPARATOR = ".draw"
_NOISE_DRAW = re.compile(rf"^(?P<base>.+){re.escape(NOISE_DRAW_SEPARATOR)}(?P<draw>[1-9][0-9]*)$")


def noise_draw_dataset(name: str, draw: int) -> str:
    """The dataset name whose stores hold noise draw ``draw`` of ``name`` (draw 0: ``name`` itself)."""
    return name if draw == 0 else f"{name}{NOISE_DRAW_SEPARATOR}{draw}"


def split_noise_draw(config: dict, name: str) -> tuple[str, int]:
    """(configured dataset, draw) of a dataset name; a configured name is draw 0 even if it looks like a draw."""
    match = _NOISE_DRAW.match(name)
    if name in config.get("datasets", {}) or not match:
        return name, 0
    return match["base"], int(match["draw"])


def dataset_entry(config: dict, name: str) -> dict:
    base, _ = split_noise_draw(config, name)
    try:
        return config["datasets"][base]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; config/datasets has {', '.join(config['datasets'])}") from None


def spair_subset_args(config: dict, name: str) -> str:
    """The subset policy of SPair dataset ``name`` as command-line flags: ``--subset-fallback draw`` for an entry
    with ``subset_fallback: draw`` (DHF's val-360/test-360 file may be replaced by a labelled draw) and
    ``--no-official-counts`` for ``official_counts: false`` (fixture trees); nothing for other kinds."""
    from diffact.data.spair import subset_options

    entry = dataset_entry(config, name)
    if entry.get("kind") != "spair":
        return ""
    options = subset_options(entry)
    flags = ["--subset-fallback draw"] if options["subset_fallback"] == "draw" else []
    flags += [] if options["official_counts"] else ["--no-official-counts"]
    return " ".join(flags)


def dataset_input(config: dict, name: str) -> list[str]:
    entry = dataset_entry(config, name)
    return [f"{entry['root']}/{DEMO_DATA_MARKERS[entry['kind']]}"] if entry.get("build") else []


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


def resources_by_stage(config: dict, stages: tuple[str, ...], choose) -> dict:
    """Snakemake ``resources:`` for a rule whose jobs belong to different stages: each value a function of the
    job's wildcards, ``choose(wildcards)`` naming its stage (one of ``stages``). A name that only some stages set
    (e.g. ``slurm_partition`` on ``extract``) is unset (None) for the jobs of the others."""
    per_stage = {stage: stage_resources(config, stage) for stage in stages}
    names = sorted({name for values in per_stage.values() for name in values})
    return {name: (lambda wildcards, name=name: per_stage[choose(wildcards)].get(name)) for name in names}


# ---- resources per rule ---------------------------------------------------------------------------------------
# Every rule belongs to one stage; the config's `resources` section sets, per stage, the threads, memory (mem_mb),
# wall time (runtime, minutes) and GPUs (gpu) of each of its jobs, over `resources.default`. Snakemake passes them
# to the executor: `--resources gpu=N` serialises GPU jobs on one workstation, the SLURM plugin turns them into
# --cpus-per-task / --mem / --time / --gpus. Extra keys (e.g. slurm_partition, gpu_model) are passed on as they are.
RESOURCE_STAGES = {
    "default": "light jobs: demo data, merges, tables, the qualitative filter",
    "extract": "jobs that run a diffusion model: extract, noise_share, control_features",
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


# ---- cross-references of a profile, checked when the workflow loads -------------------------------------------
# Every name a profile uses to point at another entry (a model, a dataset, a layer set of config/layers/<family>/,
# a layer of a figure set, a scene, a family) must exist, or the plan dies later in a traceback (a KeyError in a
# rule file) or, worse, silently leaves something out. `check_references` runs right after the schema validation
# (workflow/rules/common.smk) and `diffact check-data` lists every problem; each problem is one line: where it is
# (the config path), what it names, and the names it could have been.


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _unknown(where: str, what: str, name, known, context: str = "", plural: str = "") -> str:
    """One line: ``<where>: no <what> '<name>'<context>; did you mean '<close>'? (known <what>s: ...)``."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}: no {what} {name!r}{context}{hint} (known {plural or what + 's'}: {', '.join(known) or 'none'})"


def _family(config: dict, model: str) -> str | None:
    entry = _as_dict(config.get("models")).get(model)
    return entry.get("family") if isinstance(entry, dict) else None


def is_transformer(config: dict, model: str) -> bool:
    """Whether a profile model is a DiT (its family's denoiser is ``pipe.transformer``): the U-Net-only figures
    (stages, levels, ViTs per resolution) are not planned for it."""
    from diffact.families.registry import get_family

    return get_family(model_entry(config, model)["family"]).denoiser_attr == "transformer"


def _families() -> list[str]:
    """The registered model families (diffact.families.registry; their layer sets: config/layers/<family>/)."""
    from diffact.families.registry import family_names

    return family_names()


class _References:
    """Collects the problems of one profile (see :func:`reference_problems`); each check is one small method."""

    def __init__(self, config: dict):
        self.config = config
        self.models = list(_as_dict(config.get("models")))
        self.datasets = _as_dict(config.get("datasets"))
        self.problems: list[str] = []

    def model(self, where: str, name) -> bool:
        if name in self.models:
            return True
        self.problems.append(_unknown(where, "model", name, self.models))
        return False

    def models_list(self, where: str, names) -> list[str]:
        return [n for i, n in enumerate(_as_list(names)) if self.model(f"{where}[{i}]", n)]

    def dataset(self, where: str, name, kinds: tuple[str, ...] = ()) -> bool:
        if not isinstance(name, str) or name not in self.datasets:
            self.problems.append(_unknown(where, "dataset", name, self.datasets))
            return False
        kind = _as_dict(self.datasets[name]).get("kind")
        if kinds and kind not in kinds:
            self.problems.append(f"{where}: dataset {name!r} has kind {kind!r}; expected {' or '.join(kinds)} "
                                 f"(datasets of that kind: {', '.join(self._of_kinds(kinds)) or 'none'})")
            return False
        return True

    def _of_kinds(self, kinds: tuple[str, ...]) -> list[str]:
        return [n for n, e in self.datasets.items() if _as_dict(e).get("kind") in kinds]

    def datasets_list(self, where: str, names, kinds: tuple[str, ...] = ()) -> list[str]:
        return [n for i, n in enumerate(_as_list(names)) if self.dataset(f"{where}[{i}]", n, kinds)]

    def family(self, where: str, name) -> bool:
        if name in _families():
            return True
        self.problems.append(_unknown(where, "model family", name, _families(), plural="model families"))
        return False

    def layer_set(self, where: str, name, model: str) -> bool:
        """``name`` is a config/layers/<family>/<name>.yaml of ``model``'s family."""
        from diffact.extract.layersets import available_sets

        family = _family(self.config, model)
        if family is None or family not in _families():
            return False  # the model's own entry is wrong: _model_references says so
        sets = available_sets(family)
        if name in sets:
            return True
        self.problems.append(_unknown(where, "layer set", name, sets,
                                      context=f" for model {model} (config/layers/{family}/)"))
        return False

    def layer_set_for(self, where: str, name, models, skip=lambda model, name: False) -> None:
        """Set ``name`` for every model of ``models`` (unless ``skip(model, name)``), reported once."""
        for model in models:
            if not skip(model, name) and not self.layer_set(where, name, model):
                return

    def layer_sets_for(self, where: str, names, models, skip=lambda model, name: False) -> None:
        for i, name in enumerate(_as_list(names)):
            self.layer_set_for(f"{where}[{i}]", name, models, skip)

    def set_map(self, where: str, mapping, values_are_sets: bool = False) -> None:
        """model → {layer set: reason} (``unavailable``) or {layer set: other set} (``substitutes``, with
        ``values_are_sets``): known models, and sets of their families."""
        for model, sets in _as_dict(mapping).items():
            if not self.model(f"{where}.{model}", model):
                continue
            for name, value in _as_dict(sets).items():
                self.layer_set(f"{where}.{model}.{name}", name, model)
                if values_are_sets:
                    self.layer_set(f"{where}.{model}.{name}", value, model)

    def parts(self, where: str, parts, layers_may_be_names: bool = False) -> None:
        """``[[model, layer set], ...]`` of a combined entry (segmentation's second item may list layer names)."""
        for i, part in enumerate(_as_list(parts)):
            if not (isinstance(part, (list, tuple)) and len(part) == 2):
                continue  # the schema says so
            model, layers = part
            if self.model(f"{where}[{i}][0]", model) and (isinstance(layers, str) or not layers_may_be_names):
                self.layer_set(f"{where}[{i}][1]", layers, model)


def _shard_references(refs: _References, config: dict) -> None:
    """Every ``extraction.shards_by_store`` key names a store ``<dataset>/<model>/<layer set>`` of known names
    (a typo would silently leave that store at the default count)."""
    for key in _as_dict(_as_dict(config.get("extraction")).get("shards_by_store")):
        where, parts = f"extraction.shards_by_store.{key}", str(key).split("/")
        if len(parts) != 3:
            refs.problems.append(f"{where}: a store is <dataset>/<model>/<layer set>, got {key!r}")
            continue
        dataset, model, layer_set = parts
        refs.dataset(where, dataset)
        if refs.model(where, model):
            refs.layer_set(where, layer_set, model)


def _correspondence_references(refs: _References, config: dict) -> None:
    corr = _as_dict(config.get("correspondence"))
    if not corr:
        return
    if "dataset" in corr:
        refs.dataset("correspondence.dataset", corr["dataset"], ("spair",))
    models = refs.models_list("correspondence.models", corr.get("models"))
    if "layer_set" in corr:
        refs.layer_set_for("correspondence.layer_set", corr["layer_set"], models)
    practical = _as_dict(corr.get("practical"))
    if practical:
        refs.models_list("correspondence.practical.models", practical.get("models"))
        refs.dataset("correspondence.practical.select_on", practical.get("select_on"), ("spair",))
    table1 = _as_dict(corr.get("table1"))
    if not table1:
        return
    t1_models = refs.models_list("correspondence.table1.models", table1["models"]) if "models" in table1 \
        else list(_as_dict(config.get("models")))
    for role, name in _as_dict(table1.get("datasets")).items():
        refs.dataset(f"correspondence.table1.datasets.{role}", name, ("spair",))
    substitutes = _as_dict(table1.get("substitutes"))
    refs.layer_sets_for("correspondence.table1.layer_sets", table1.get("layer_sets", []), t1_models,
                        skip=lambda model, name: name in _as_dict(substitutes.get(model)))
    for name, spec in _as_dict(table1.get("combined")).items():
        refs.parts(f"correspondence.table1.combined.{name}.parts", _as_dict(spec).get("parts"))
    refs.set_map("correspondence.table1.unavailable", table1.get("unavailable"))
    refs.set_map("correspondence.table1.substitutes", substitutes, values_are_sets=True)


def _figure_references(refs: _References, config: dict) -> None:
    """The PCA maps (figures.smk): model, dataset, store set, and the layers (in the set, for listed sets)."""
    from diffact.extract.layersets import available_sets, load_set_spec

    figures, corr = _as_dict(config.get("figures")), _as_dict(config.get("correspondence"))
    model = figures.get("pca_model")
    if not model or not refs.model("figures.pca_model", model):
        return
    where, dataset = ("figures.pca_dataset", figures["pca_dataset"]) if "pca_dataset" in figures \
        else ("correspondence.dataset (figures.pca_dataset's default)", corr.get("dataset"))
    refs.dataset(where, dataset)
    if "layer_set" in figures:
        layer_set, known = figures["layer_set"], refs.layer_set("figures.layer_set", figures["layer_set"], model)
    else:  # correspondence.layer_set, checked there for the correspondence models
        layer_set = corr.get("layer_set", "figure")
        known = (layer_set in available_sets(_family(config, model)) if model in _as_list(corr.get("models"))
                 else refs.layer_set("correspondence.layer_set (figures.layer_set's default)", layer_set, model))
    if not known:
        return
    listed = load_set_spec(_family(config, model), layer_set).get("layers")
    if listed is None:
        return  # a `select` rule: its layers are known only against a U-Net (checked when the job runs)
    for i, layer in enumerate(_as_list(figures.get("pca_layers"))):
        if layer not in listed:
            refs.problems.append(_unknown(f"figures.pca_layers[{i}]", "layer", layer, listed,
                                          context=f" in layer set {layer_set!r} of model {model}"))


def _property_references(refs: _References, config: dict) -> None:
    props = _as_dict(config.get("properties"))
    if not props:
        return
    models = refs.models_list("properties.models", props["models"]) if "models" in props \
        else list(_as_dict(config.get("models")))
    refs.layer_set_for("properties.layer_set", props.get("layer_set", "screen"), models)
    scenes = refs.datasets_list("properties.scenes", props.get("scenes"), ("ddpmseg",))
    for where, scene in (("properties.control.scene", _as_dict(props.get("control")).get("scene")),
                         ("properties.figure_scene", props.get("figure_scene"))):
        if scene is not None and scene not in scenes:
            refs.problems.append(_unknown(where, "scene", scene, scenes, context=" among properties.scenes"))
    for family in _as_dict(props.get("filter_models")):
        refs.family(f"properties.filter_models.{family}", family)


def _scarce_references(refs: _References, config: dict) -> None:
    scarce = _as_dict(config.get("scarce"))
    if not scarce:
        return
    for scene in ("simple", "complex"):
        if scene in scarce:
            refs.dataset(f"scarce.{scene}", scarce[scene], ("ddpmseg",))
    models = refs.models_list("scarce.models", scarce.get("models"))
    table2 = _as_dict(scarce.get("table2"))
    unavailable = _as_dict(table2.get("unavailable"))
    refs.layer_sets_for("scarce.table2.layer_sets", table2.get("layer_sets", []), models,
                        skip=lambda model, name: name in _as_dict(unavailable.get(model)))
    refs.set_map("scarce.table2.unavailable", unavailable)
    for name, spec in _as_dict(table2.get("combined")).items():
        refs.parts(f"scarce.table2.combined.{name}.parts", _as_dict(spec).get("parts"))
    screen = _as_dict(scarce.get("screen"))
    for key in ("store_set", "filter_set"):
        refs.layer_set_for(f"scarce.screen.{key}", screen.get(key, "pool"), models)
    compare = _as_dict(scarce.get("compare"))
    for model in _as_dict(compare.get("paper_model")):
        refs.model(f"scarce.compare.paper_model.{model}", model)
    for key, value in _as_dict(compare.get("budget")).items():
        where = f"scarce.compare.budget.{key}"
        if key in _families():
            if isinstance(value, str):
                refs.layer_set_for(where, value, [m for m in models if _family(config, m) == key])
        elif refs.model(where, key) and isinstance(value, str):
            refs.layer_set(where, value, key)
    for family in _as_dict(compare.get("resolutions")):
        refs.family(f"scarce.compare.resolutions.{family}", family)
    configured = _as_list(scarce.get("models"))  # a bad name there is reported once, above
    for i, model in enumerate(_as_list(_as_dict(scarce.get("table3")).get("models"))):
        if model not in configured:
            refs.problems.append(_unknown(f"scarce.table3.models[{i}]", "model", model, configured,
                                          context=" among scarce.models"))
    for key, value in _as_dict(_as_dict(scarce.get("table3")).get("paper_generic")).items():
        where = f"scarce.table3.paper_generic.{key}"
        if key in _families():
            refs.layer_set_for(where, value, [m for m in models if _family(config, m) == key],
                               skip=lambda model, name: name in _as_dict(unavailable.get(model)))
        elif refs.model(where, key) and value not in _as_dict(unavailable.get(key)):
            refs.layer_set(where, value, key)


def _segmentation_references(refs: _References, config: dict) -> None:
    seg = _as_dict(config.get("segmentation"))
    if not seg:
        return
    refs.datasets_list("segmentation.datasets", seg.get("datasets"), ("ade20k", "cityscapes"))
    models = refs.models_list("segmentation.models", seg.get("models"))
    unavailable = _as_dict(seg.get("unavailable"))
    refs.layer_sets_for("segmentation.layer_sets", seg.get("layer_sets", []), models,
                        skip=lambda model, name: name in _as_dict(unavailable.get(model)))
    for name, spec in _as_dict(seg.get("combined")).items():
        refs.parts(f"segmentation.combined.{name}.parts", _as_dict(spec).get("parts"), layers_may_be_names=True)
    refs.set_map("segmentation.unavailable", unavailable)


def _model_references(refs: _References, config: dict) -> None:
    for model in refs.models:
        family = _family(config, model)
        if family is not None:
            refs.family(f"models.{model}.family", family)


def reference_problems(config: dict) -> list[str]:
    """Every cross-reference of a profile that names nothing (one line each; empty: all resolve): model names,
    dataset names (and the kinds the sections need), layer sets of the models' families, the layers of a listed
    figure set, properties scenes, combined parts, scarce and segmentation models, families."""
    refs = _References(config)
    for check in (_model_references, _shard_references, _correspondence_references, _figure_references, _property_references,
                  _scarce_references, _segmentation_references):
        check(refs, config)
    return refs.problems


def check_references(config: dict) -> None:
    """Raise one ConfigError (one line: the first problem, and how many more) when a cross-reference of the
    profile names nothing; the workflow calls this when it loads, before any job runs."""
    problems = reference_problems(config)
    if problems:
        more = f" (and {len(problems) - 1} more; `diffact check-data` lists them all)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
