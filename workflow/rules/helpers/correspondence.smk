# Helper functions of correspondence.smk (config → paths and arguments), kept apart from its rules: rule files
# hold no function definitions (snakemake --lint). Included at the top of correspondence.smk; the functions read
# that file's section constants when called.


def corr_subset_arg(dataset=None):
    """The screened dataset's (default: correspondence.dataset) named subset (its store holds only those images)
    and its subset policy (--subset-fallback, --no-official-counts), as pck-screen flags."""
    dataset = dataset or CORR["dataset"]
    subset = wf.dataset_entry(config, dataset).get("subset")
    return f"--subset {subset} {wf.spair_subset_args(config, dataset)}".strip() if subset else ""


def practical_models():
    """Models whose practical set the workflow chooses by its own screen (correspondence.practical)."""
    return list(PRACTICAL.get("models", []))


def corr_models():
    models = list(CORR.get("models", []))
    if CORR.get("random_reference", False):
        models += [f"{m}{wf.RANDOM_SUFFIX}" for m in CORR.get("models", []) if config["models"][m].get("build")]
    return models


def t1_entry(w):
    return corr_plan.find_entry(config, w.entry, w.layerset)


def t1_stores(w, role):
    """complete.json of each model's store of the dataset that holds split `role`, in concatenation order; for trn
    and val with `noise: draws`, one store per noise draw of each model."""
    return [wf.store_done(config, dataset, model, layer_set) for model, layer_set in t1_entry(w).parts
            for dataset in corr_plan.role_datasets(config, role)]


def t1_draw_store_args(flag, w, role):
    """`flag` once per model, in concatenation order; a model's noise-draw stores joined by commas."""
    datasets = corr_plan.role_datasets(config, role)
    return " ".join(f"{flag} " + ",".join(wf.store_dir(config, dataset, model, layer_set) for dataset in datasets)
                    for model, layer_set in t1_entry(w).parts)


def t1_store_args(flag, done_files):
    return " ".join(f"{flag} {os.path.dirname(p)}" for p in done_files)


def t1_eval_role(w):
    return "val" if w.protocol == "paper" else "test"


def t1_subset_policy(role):
    """The subset policy flags of the dataset that holds split `role` (its subset_fallback, official_counts)."""
    return wf.spair_subset_args(config, corr_plan.split_dataset(config, role))


def t1_eval_stores(w):
    # trained + paper reads the validation scores logged during training: no store needed.
    return [] if (w.method == "trained" and w.protocol == "paper") else t1_stores(w, t1_eval_role(w))


def t1_labels(w):
    import shlex

    entry = t1_entry(w)
    labels = {"--entry": entry.name, "--layer-set": entry.layer_set, "--models": "+".join(m for m, _ in entry.parts),
              "--families": "+".join(entry.families), "--extracted-sets": "+".join(s for _, s in entry.parts),
              "--paper-method": entry.paper_method, "--note": entry.note}
    return " ".join(f"{k} {shlex.quote(v)}" for k, v in labels.items())


def t1_plan_json():
    import json
    import shlex

    plan = [{"name": e.name, "layer_set": e.layer_set, "parts": e.parts, "families": e.families,
             "unavailable": e.unavailable, "paper_method": e.paper_method} for e in corr_plan.table1_entries(config)]
    return shlex.quote(json.dumps(plan))
