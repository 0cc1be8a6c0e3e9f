"""Quantitative comparison (paper §5.2-5.3): the ``scarce.screen``, ``scarce.compare`` and ``scarce.table3`` sections
of a profile → each filtered activation alone on label-scarce segmentation (Tables 4-6 analogues), the ranking per
resolution, the generic / specific compositions and Table 3 (workflow/rules/compare.smk).

Folders: ``<results>/compare/<model>/{filter,screen-<scene>,rank,composition}.csv`` and
``<results>/compare/<model>/table3/<setting>-<scene>.{csv,json}``.
"""

from __future__ import annotations

import json
import shlex

from diffact.workflow import scarce
from diffact.workflow.extract import extract_args, store_done
from diffact.workflow.profile import model_entry, results_dir

DEFAULT_SET = "pool"
# scarce.screen.store_set: filtered = a store of the qualitative filter's kept activations only (plus Table 3's
# paper-generic set), written per model and scene from the filter's set file (issue #19: SDXL 1.45 GB → 0.23 GB per
# 1024-px image), instead of a store of a named layer set that holds the whole pool.
FILTERED_SET = "filtered"


def _paper():
    """The paper's Tables 3-6 facts (imported when asked: pandas is not needed to plan the other stages)."""
    from diffact.analysis import compare as paper_compare

    return paper_compare  # the candidate pool whose activations the filter judges and the screen stores


def screen(config: dict) -> dict:
    return scarce.section(config).get("screen") or {}


def settings(config: dict) -> dict:
    return scarce.section(config).get("compare") or {}


def table3(config: dict) -> dict:
    return scarce.section(config).get("table3") or {}


def compare_dir(config: dict) -> str:
    return f"{results_dir(config)}/compare"


def family(config: dict, model: str) -> str:
    return model_entry(config, model)["family"]


def filter_set(config: dict) -> str:
    return screen(config).get("filter_set", DEFAULT_SET)


def store_set(config: dict) -> str:
    return screen(config).get("store_set", DEFAULT_SET)


def reads_filtered_store(config: dict) -> bool:
    """Whether the screens read a store of the filtered activations only (scarce.screen.store_set: filtered)."""
    return store_set(config) == FILTERED_SET


def filtered_set_file(config: dict, model: str) -> str:
    """The layer-set file scarce_filter writes: the kept activations (+ Table 3's paper-generic set)."""
    return f"{compare_dir(config)}/{model}/filtered.yaml"


def filtered_set_output(config: dict) -> dict:
    """scarce_filter's ``layers`` output (the set file) where the screens read a filtered store, else nothing (the
    demo's screens read its `screen` store: no file, no rerun of the filter's dependants)."""
    return {"layers": f"{compare_dir(config)}/{{model}}/filtered.yaml"} if reads_filtered_store(config) else {}


def filtered_set_args(config: dict, model: str, output) -> str:
    """scarce_filter's ``--set-out`` (when it writes the set file) and ``--also-set``: Table 3's paper-generic set
    where that row runs (it reads the same store)."""
    if not reads_filtered_store(config):
        return ""
    also = "" if paper_generic_unavailable(config, model) else f" --also-set {paper_generic_set(config, model)}"
    return f"--set-out {shlex.quote(str(output.layers))}{also}"


def filtered_store_args(config: dict, model: str, scene: str) -> str:
    """``diffact extract`` arguments of the filtered store: the scene's store settings with the filter's set file."""
    return extract_args(config, scarce.dataset(config, scene), model, filtered_set_file(config, model))


def screen_store(config: dict, model: str, scene: str) -> str:
    """The store (complete.json) the screen and the Table 3 runs of ``model`` read on ``scene``: the filtered one
    (scarce_filtered_store) or the store of scarce.screen.store_set."""
    if reads_filtered_store(config):
        return f"{compare_dir(config)}/{model}/features-{scene}/complete.json"
    return store_done(config, scarce.dataset(config, scene), model, store_set(config))


def kept_layers_arg(filter_csv: str) -> str:
    """The activations the qualitative filter kept, read by the screen's command from the filter's report."""
    return f"--layers-from-csv {shlex.quote(f'{filter_csv}:layer:kept=True')}"


def setting_layers_arg(composition_csv: str, setting: str) -> str:
    """The activations of one composed set (generic, paper-generic, specific), read from the composition CSV."""
    return f"--layers-from-csv {shlex.quote(f'{composition_csv}:activation:set={setting}')}"


def paper_model(config: dict, model: str) -> str:
    """Whose Tables 4-6 columns sit beside ours: config compare.paper_model, else the model's family."""
    fam = family(config, model)
    default = fam if fam in _paper().PAPER_COLUMNS else "none"
    return (settings(config).get("paper_model") or {}).get(model, default)


def budget(config: dict, model: str) -> int | str:
    """Channel budget of the composed sets: by model name, then family, then the paper's (Ours totals). An integer,
    or the name of a layer set whose channel total (read from its store on the simple dataset) is the budget."""
    budgets = settings(config).get("budget") or {}
    fam = family(config, model)
    value = budgets.get(model, budgets.get(fam, _paper().PRACTICAL_CHANNELS.get(fam)))
    if value is None:
        raise ValueError(f"scarce.compare.budget: no channel budget for model {model!r} (family {fam})")
    return value


def budget_stores(config: dict, model: str) -> list[str]:
    """The store whose channel total is the budget, when the budget names a layer set."""
    value = budget(config, model)
    return [] if isinstance(value, int) else [store_done(config, scarce.dataset(config, "simple"), model, value)]


def budget_arg(config: dict, model: str, stores: list[str]) -> str:
    """``--budget N``, or ``--budget-from-store`` the named set's store (its channels are known once it exists)."""
    return f"--budget-from-store {stores[0]}" if stores else f"--budget {budget(config, model)}"


def resolutions_arg(config: dict, model: str) -> str:
    res = (settings(config).get("resolutions") or {}).get(family(config, model))
    return f"--resolutions {','.join(res)}" if res else ""


def t3_models(config: dict) -> list[str]:
    return [m for m in table3(config).get("models", []) if m in scarce.models(config)]


def paper_generic_set(config: dict, model: str) -> str | None:
    """The paper's fixed generic set for Table 3's paper-generic row (scarce.table3.paper_generic, by model name or
    family: the paper's sdxl → practical = Ours-XL), or None when the profile has none for this model."""
    sets = table3(config).get("paper_generic") or {}
    return sets.get(model, sets.get(family(config, model)))


def paper_generic_unavailable(config: dict, model: str) -> str:
    """Why the paper-generic row cannot run for this model ('' = it runs): the set's layers are the Table 2 set's,
    so the reason a demo model lacks them is scarce.table2.unavailable's."""
    if model not in t3_models(config):
        return "not a Table 3 model (scarce.table3.models)"
    name = paper_generic_set(config, model)
    return scarce.t2_unavailable(config, model, name) if name else "no paper_generic set in scarce.table3"


def t3_settings(config: dict, model: str) -> list[str]:
    """Table 3 settings run for this model, in the table's row order."""
    runs = not paper_generic_unavailable(config, model)
    return [s for s in _paper().TABLE3_SETTINGS if s != "paper-generic" or runs]


def paper_generic_stores(config: dict, model: str) -> list[str]:
    """The screen store on the simple dataset, whose shapes give the paper-generic set's channels (when it runs)."""
    return [] if paper_generic_unavailable(config, model) else [screen_store(config, model, "simple")]


def paper_generic_arg(config: dict, model: str, stores) -> str:
    """--paper-generic SET=LAYERS --store-layers STORE for scarce-compare, or '' (the set's explicit layer list;
    a `select:` set has no fixed names)."""
    if paper_generic_unavailable(config, model):
        return ""
    from diffact.extract.layersets import load_set_spec

    name = paper_generic_set(config, model)
    spec = load_set_spec(family(config, model), name)
    if "layers" not in spec:
        raise ValueError(f"scarce.table3.paper_generic: {spec['_path']} selects layers by rule; "
                         "the paper's fixed set needs an explicit 'layers' list")
    store = stores if isinstance(stores, str) else stores[0]  # one input file is a plain string in snakemake
    return f"--paper-generic {name}={','.join(spec['layers'])} --store-layers {store}"


def t3_runs(config: dict, ext: str = "csv") -> list[str]:
    """Every Table 3 run's output (``csv`` or ``json``): model × setting × scene."""
    return [f"{compare_dir(config)}/{m}/table3/{s}-{c}.{ext}" for m in t3_models(config)
            for s in t3_settings(config, m) for c in scarce.SCENES]


def t3_compositions(config: dict) -> list[str]:
    return [f"{compare_dir(config)}/{m}/composition.csv" for m in t3_models(config)]


def t3_families_param(config: dict) -> str:
    """model → family of the Table 3 models, as one notebook parameter (YAML mapping)."""
    return "{" + ",".join(f"{m}: {family(config, m)}" for m in t3_models(config)) + "}"


def t3_plan_json(config: dict) -> str:
    """Table 3's paper-generic row per model for the notebook: the set and why it cannot run ('' = it ran)."""
    plan = {m: {"set": paper_generic_set(config, m), "unavailable": paper_generic_unavailable(config, m)}
            for m in t3_models(config)}
    return shlex.quote(json.dumps(plan))


def runs_comparison(config: dict) -> bool:
    """Whether the profile screens the filtered activations (scarce.screen)."""
    return bool(scarce.section(config) and screen(config))


def targets(config: dict) -> list[str]:
    if not runs_comparison(config):
        return []
    out = [f"{compare_dir(config)}/{m}/rank.csv" for m in scarce.models(config)]
    return out + (t3_runs(config) if table3(config) else [])


def figure_names(config: dict) -> list[str]:
    if not runs_comparison(config):
        return []
    names = [f"table4_6_{m}.{ext}" for m in scarce.models(config) for ext in ("csv", "tex", "md")]
    return names + ([f"table3.{ext}" for ext in ("csv", "tex", "md")] if table3(config) and t3_models(config) else [])
