# Helper functions of properties.smk (config → paths and arguments), kept apart from its rules: rule files
# hold no function definitions (snakemake --lint). Included at the top of properties.smk; the functions read
# that file's section constants when called.


def prop_models():
    return list(PROP.get("models", list(config["models"])))


def prop_scenes():
    """Configured scenes that exist as datasets; the others are reported in unavailable.csv."""
    return [s for s in PROP.get("scenes", []) if s in config["datasets"]]


def missing_scenes():
    return [s for s in PROP.get("scenes", []) if s not in config["datasets"]]


def control_scene():
    scene = PROP.get("control", {}).get("scene")
    return scene if scene in prop_scenes() else None


def figure_scene():
    scene = PROP.get("figure_scene")
    return scene if scene in prop_scenes() else (prop_scenes() or [None])[0]


def prop_store(model, scene):
    """The feature store (complete.json) the map properties of (model, scene) read."""
    if model == CONTROL:
        return f"{PROP_DIR}/{CONTROL}/{scene}/store/complete.json"
    return wf.store_done(config, scene, model, PROP.get("layer_set", "screen"))


def prop_pck(model):
    """The model's NN PCK screening CSV (correspondence.smk), when the profile screens correspondence."""
    if PROP.get("pck", True) and config.get("correspondence") and model != CONTROL:
        return f"{RESULTS}/correspondence/{model}/nn_pck.csv"
    return []


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "^$"


def _scene_stores(model):
    return [prop_store(model, s) for s in prop_scenes()]
