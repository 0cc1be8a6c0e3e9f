"""A profile (config mapping): reading it (``base:`` merged underneath), its models and datasets, and the paths and
flags derived from their entries. The other modules of :mod:`diffact.workflow` build on these.
"""

from __future__ import annotations

import re
from pathlib import Path

from diffact.utils.errors import ConfigError

RANDOM_SUFFIX = "-random"


def list_param(items) -> str:
    """A list as one notebook parameter (``-p 'key=[a,b]'``, read back as YAML by ``diffact notebook``)."""
    return "[" + ",".join(str(i) for i in items) + "]"


def alternatives(names) -> str:
    """A wildcard constraint matching exactly these names (nothing, for none)."""
    return "|".join(re.escape(str(n)) for n in names) or "^$"


def optional_flags(section: dict, flags: dict[str, str]) -> str:
    """``--flag value`` for each key of ``flags`` (config key → command-line flag) that ``section`` sets: a value the
    profile leaves out is the command's own default (argparse or the protocol dataclass), kept in one place."""
    import shlex

    return " ".join(f"{flag} {shlex.quote(str(section[key]))}" for key, flag in flags.items() if key in section)


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


FIGURES_ROOT = "paper_figures"


def profile_name(config: dict) -> str:
    """The profile's name (``profile:``; the demo's config/config.yaml is ``demo``)."""
    return config.get("profile", "demo")


def figures_dir(config: dict) -> str:
    """Where the profile's notebooks write figures and tables: ``paper_figures``, else ``paper_figures/<profile>``,
    so that each profile keeps its own figures and index (running one profile never overwrites another's, nor makes
    snakemake rerun them on the next switch)."""
    return config.get("paper_figures", f"{FIGURES_ROOT}/{profile_name(config)}")


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


def demo_marker(entry: dict) -> str:
    """The file the demo builder of a built dataset writes last, under its root (its kind's, ``data.registry``):
    its presence means the root is complete."""
    from diffact.data.registry import get_kind

    return f"{entry['root']}/{get_kind(entry['kind']).demo_marker}"


def demo_datasets(config: dict, kind: str) -> dict:
    """The datasets of a kind the workflow builds (a ``build`` that kind's registry entry makes), by name."""
    from diffact.data.registry import get_kind

    builds = get_kind(kind).builds
    return {name: entry for name, entry in config["datasets"].items()
            if entry.get("kind") == kind and entry.get("build") in builds}


def dataset_input(config: dict, name: str) -> list[str]:
    entry = dataset_entry(config, name)
    return [demo_marker(entry)] if entry.get("build") else []



def is_transformer(config: dict, model: str) -> bool:
    """Whether a profile model is a DiT (its family's denoiser is ``pipe.transformer``): the U-Net-only figures
    (stages, levels, ViTs per resolution) are not planned for it."""
    from diffact.families.registry import get_family

    return get_family(model_entry(config, model)["family"]).denoiser_attr == "transformer"
