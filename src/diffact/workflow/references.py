"""Cross-references of a profile, checked when the workflow loads (workflow/rules/common.smk) and listed by
``diffact check-data``."""

from __future__ import annotations

from diffact.utils.errors import ConfigError

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
        if key == "store_set" and screen.get(key) == "filtered":
            continue  # the filter's own output (workflow.compare.FILTERED_SET), not a config/layers set
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
