"""The three universal properties (paper §4, App. A/E) and the §5.1 qualitative filter: the ``properties`` section of a
profile → scenes, stores, wildcard patterns and targets of workflow/rules/properties.smk (and the control U-Net's
rules in models.smk and extract.smk).

Folders: ``<results>/properties/<model>/<scene>/{noise_share,maps}.csv``, ``<results>/properties/<model>/properties.csv``,
``<results>/properties/<model>/<scene>/figure_maps.npz`` (the maps the property figures draw, made by property_maps
beside its table, so the figures read no store), ``<results>/properties/control-unet/...`` (the Fig 15 control),
``<results>/properties/filter/<family>.csv``.

The diffusion models' map properties stream from the model (``diffact property-maps`` with the store's own extract
arguments: the numbers of that store, byte for byte, without writing it); only the control U-Net's are read from a
store, the one control_features writes (the control is no diffusion pipeline that `diffact extract` arguments name).
"""

from __future__ import annotations

from diffact.workflow.extract import extract_args
from diffact.workflow.profile import alternatives, is_transformer, model_entry, optional_flags, results_dir

CONTROL = "control-unet"  # the Fig 15 control: a conventional residual U-Net trained by the workflow
DEFAULT_LAYER_SET = "screen"
# Images of each scene whose maps the figures draw (Figs 5-13 show the first two of every scene; Figs 3, 15-18 the first).
FIGURE_IMAGES = 2


def section(config: dict) -> dict:
    return config.get("properties") or {}


def prop_dir(config: dict) -> str:
    return f"{results_dir(config)}/properties"


def path(config: dict, *parts: str) -> str:
    """A path under the properties folder (parts may be wildcards: ``path(config, "{scene}", "maps.csv")``)."""
    return "/".join([prop_dir(config), *parts])


def scene_csvs(config: dict, model: str, name: str) -> list[str]:
    """``<model>/<scene>/<name>`` of every property scene."""
    return [path(config, model, s, name) for s in scenes(config)]


def scene_args(config: dict, csvs) -> str:
    """``scene=csv`` arguments of properties-table, in scene order."""
    return " ".join(f"{s}={p}" for s, p in zip(scenes(config), csvs))


def layer_set(config: dict) -> str:
    """The layer set whose every activation the properties measure."""
    return section(config).get("layer_set", DEFAULT_LAYER_SET)


def models(config: dict) -> list[str]:
    """The property models (default: every model of the profile)."""
    return list(section(config).get("models", list(config["models"])))


def scenes(config: dict) -> list[str]:
    """Configured scenes that exist as datasets; the others are reported in unavailable.csv."""
    return [s for s in section(config).get("scenes", []) if s in config["datasets"]]


def missing_scenes(config: dict) -> list[str]:
    return [s for s in section(config).get("scenes", []) if s not in config["datasets"]]


def control_scene(config: dict) -> str | None:
    """The scene the control U-Net trains on, when it is one of the property scenes."""
    scene = (section(config).get("control") or {}).get("scene")
    return scene if scene in scenes(config) else None


def with_control(config: dict) -> bool:
    """Whether the profile trains and measures the Fig 15 control."""
    return bool(section(config).get("control")) and control_scene(config) is not None


def figure_scene(config: dict) -> str | None:
    """The scene the per-model map figures show: ``figure_scene``, else the first scene."""
    scene = section(config).get("figure_scene")
    return scene if scene in scenes(config) else (scenes(config) or [None])[0]


def control_model_dir(config: dict) -> str:
    return f"{results_dir(config)}/models/{CONTROL}"


def control_store(config: dict, scene: str) -> str:
    """The control U-Net's feature store (complete.json) on ``scene``, which its map properties read."""
    return f"{prop_dir(config)}/{CONTROL}/{scene}/store/complete.json"


def streamed_store_args(config: dict, model: str, scene: str) -> str:
    """The `diffact extract` arguments of the store whose features property_maps measures (and streams instead of
    reading: the store itself is never written for the properties)."""
    return extract_args(config, scene, model, layer_set(config))


def figure_maps(config: dict, model: str, scene: str) -> str:
    """The figure-maps file of (model, scene) that property_maps writes beside maps.csv (diffact.viz.figure_maps)."""
    return path(config, model, scene, "figure_maps.npz")


def scene_figure_maps(config: dict, model: str) -> list[str]:
    return [figure_maps(config, model, s) for s in scenes(config)]


def pck_input(config: dict, model: str) -> list[str] | str:
    """The model's NN PCK screening CSV (correspondence.smk), when the profile screens correspondence."""
    if section(config).get("pck", True) and config.get("correspondence") and model != CONTROL:
        return f"{results_dir(config)}/correspondence/{model}/nn_pck.csv"
    return []


def table(config: dict, model: str) -> str:
    return f"{prop_dir(config)}/{model}/properties.csv"


def tables(config: dict, control: bool = False) -> list[str]:
    """The property table of every model, and the control's last when ``control`` and the profile has one."""
    return [table(config, m) for m in models(config)] + ([table(config, CONTROL)] if control and with_control(config) else [])


def filter_families(config: dict) -> list[str]:
    """Families whose candidate pool the §5.1 filter reads (``filter_models``: family → model to read)."""
    return list(section(config).get("filter_models") or {})


def filter_source(config: dict, family: str) -> str:
    return section(config)["filter_models"][family]


def filter_reports(config: dict) -> list[str]:
    return [f"{prop_dir(config)}/filter/{f}_vs_paper.csv" for f in filter_families(config)]


def verdict_family_arg(config: dict, model: str) -> str:
    """``--family F`` of properties-table: the §5.1 filter is a rule over U-Net stages, so no verdict for the
    control or a DiT."""
    if model == CONTROL or is_transformer(config, model):
        return ""
    return f"--family {model_entry(config, model)['family']}"


def unavailable_model_args(config: dict) -> str:
    """``--model NAME FAMILY SOURCE demo|weights`` of properties-unavailable, one per property model."""
    args = []
    for m in models(config):
        entry = model_entry(config, m)
        args.append(f"--model {m} {entry['family']} {entry['source']} {'demo' if entry.get('build') else 'weights'}")
    return " ".join(args)


# Per-rule wildcard constraints (a global wildcard_constraints block would also bind other files' {scene} wildcards).
def model_pattern(config: dict) -> str:
    return alternatives(models(config))


def any_model_pattern(config: dict) -> str:
    """The property models and the control."""
    return alternatives(models(config) + [CONTROL])


def scene_pattern(config: dict) -> str:
    return alternatives(scenes(config))


def measured_models(config: dict) -> list[str]:
    """The models whose properties the profile measures (none without a scene)."""
    return models(config) if scenes(config) else []


def unet_models(config: dict) -> list[str]:
    """Measured models with a U-Net layout: the per-model figures (stages, levels, ViTs) are drawn for these."""
    return [m for m in measured_models(config) if not is_transformer(config, m)]


def targets(config: dict) -> list[str]:
    """Final outputs of the property stage (figures: :func:`figure_names`)."""
    if not section(config):
        return []
    out = [f"{prop_dir(config)}/unavailable.csv"]
    out += [f"{prop_dir(config)}/filter/{family}.csv" for family in filter_families(config)]
    return out + [table(config, m) for m in measured_models(config) + ([CONTROL] if with_control(config) else [])]


def figure_names(config: dict) -> list[str]:
    """The property figures and tables of the profile, as file names in its figures folder."""
    if not section(config):
        return []
    names = ["properties_filter.csv"]
    measured = measured_models(config)
    if measured:
        names += ["properties_numbers.png", "properties_summary.csv"]
        if len({is_transformer(config, m) for m in measured}) == 2:  # U-Nets and DiTs: compare them
            names.append("properties_unet_vs_dit.png")
        for m in unet_models(config):
            names += [f"fig03_properties_{m}.png", f"fig05_13_scenes_{m}.png", f"fig16_increments_{m}.png",
                      f"fig17_resolution_{m}.png", f"fig18_vits_{m}.png"]
            if pck_input(config, m):
                names.append(f"fig04_pck_{m}.png")
    if with_control(config) and measured:
        names.append("fig15_control.png")
    return names


# ---- command-line flags a profile may set; left out, the command's own default applies -------------------------


def control_steps_arg(config: dict) -> str:
    """``--steps`` of train-control-unet when properties.control.steps is set."""
    return optional_flags(section(config).get("control") or {}, {"steps": "--steps"})


def maps_args(config: dict) -> str:
    """``--images`` and ``--pairs`` of property-maps when the profile sets them."""
    return optional_flags(section(config), {"images": "--images", "pairs": "--pairs"})


def noise_share_args(config: dict) -> str:
    """``--draws`` (noise draws per image) and ``--images`` of noise-share and control-features when the profile
    sets them."""
    return optional_flags(section(config), {"draws": "--draws", "images": "--images"})
