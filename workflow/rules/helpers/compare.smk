# Helper functions of compare.smk (config → paths and arguments), kept apart from its rules: rule files
# hold no function definitions (snakemake --lint). Included at the top of compare.smk; the functions read
# that file's section constants when called.


def cmp_family(model):
    return wf.model_entry(config, model)["family"]


def cmp_paper_model(model):
    """Whose Tables 4-6 columns sit beside ours: config compare.paper_model, else the model's family."""
    family = cmp_family(model)
    default = family if family in _compare.PAPER_COLUMNS else "none"
    return (SCARCE_CMP.get("paper_model") or {}).get(model, default)


def cmp_budget(model):
    """Channel budget of the composed sets: by model name, then family, then the paper's (Ours totals). An integer,
    or the name of a layer set whose channel total (read from its store on the simple dataset) is the budget."""
    budget = SCARCE_CMP.get("budget") or {}
    family = cmp_family(model)
    value = budget.get(model, budget.get(family, _compare.PRACTICAL_CHANNELS.get(family)))
    if value is None:
        raise ValueError(f"scarce.compare.budget: no channel budget for model {model!r} (family {family})")
    return value


def cmp_budget_store(model):
    """The store whose channel total is the budget, when the budget names a layer set."""
    value = cmp_budget(model)
    return [] if isinstance(value, int) else [wf.store_done(config, scarce_dataset("simple"), model, value)]


def cmp_budget_arg(model, stores):
    if not stores:
        return str(cmp_budget(model))
    return scarce_py('import json, sys; print(sum(s[0] for s in json.load(open(sys.argv[1]))["layers"].values()))',
                     stores[0])


def cmp_resolutions_arg(model):
    res = (SCARCE_CMP.get("resolutions") or {}).get(cmp_family(model))
    return f"--resolutions {','.join(res)}" if res else ""


def cmp_screen_store(model, scene):
    return wf.store_done(config, scarce_dataset(scene), model, SCARCE_SCREEN.get("store_set", "pool"))


def cmp_t3_models():
    return [m for m in SCARCE_T3.get("models", []) if m in scarce_models()]


def cmp_paper_generic_set(model):
    """The paper's fixed generic set for Table 3's paper-generic row (scarce.table3.paper_generic, by model name or
    family: the paper's sdxl → practical = Ours-XL), or None when the profile has none for this model."""
    sets = SCARCE_T3.get("paper_generic") or {}
    return sets.get(model, sets.get(cmp_family(model)))


def cmp_paper_generic_unavailable(model):
    """Why the paper-generic row cannot run for this model ('' = it runs): the set's layers are the Table 2 set's,
    so the reason a demo model lacks them is scarce.table2.unavailable's."""
    if model not in cmp_t3_models():
        return "not a Table 3 model (scarce.table3.models)"
    name = cmp_paper_generic_set(model)
    return scarce_t2_unavailable(model, name) if name else "no paper_generic set in scarce.table3"


def cmp_t3_settings(model):
    """Table 3 settings run for this model, in the table's row order."""
    runs = not cmp_paper_generic_unavailable(model)
    return [s for s in _compare.TABLE3_SETTINGS if s != "paper-generic" or runs]


def cmp_paper_generic_arg(model, stores):
    """--paper-generic SET=LAYERS --store-layers STORE for scarce-compare, or '' (the set's explicit layer list;
    a `select:` set has no fixed names)."""
    if cmp_paper_generic_unavailable(model):
        return ""
    from diffact.extract.layersets import load_set_spec

    name = cmp_paper_generic_set(model)
    spec = load_set_spec(cmp_family(model), name)
    if "layers" not in spec:
        raise ValueError(f"scarce.table3.paper_generic: {spec['_path']} selects layers by rule; "
                         "the paper's fixed set needs an explicit 'layers' list")
    store = stores if isinstance(stores, str) else stores[0]  # one input file is a plain string in snakemake
    return f"--paper-generic {name}={','.join(spec['layers'])} --store-layers {store}"


def cmp_t3_plan_json():
    """Table 3's paper-generic row per model for the notebook: the set and why it cannot run ('' = it ran)."""
    plan = {m: {"set": cmp_paper_generic_set(m), "unavailable": cmp_paper_generic_unavailable(m)}
            for m in cmp_t3_models()}
    return shlex.quote(json.dumps(plan))
