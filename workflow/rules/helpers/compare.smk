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
