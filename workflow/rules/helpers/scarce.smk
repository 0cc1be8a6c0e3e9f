# Helper functions of scarce.smk (config → paths and arguments), kept apart from its rules: rule files
# hold no function definitions (snakemake --lint). Included at the top of scarce.smk; the functions read
# that file's section constants when called.


def scarce_protocol():
    return {**SCARCE_PROTOCOL_DEFAULTS, **(SCARCE.get("protocol") or {})}


def scarce_protocol_args(splits, sets=True):
    """`diffact scarce` / `scarce-screen` protocol flags (everything but store, dataset, layers and threads).
    ``sets=False`` (a screen: every activation alone) leaves out --upsample, which only acts on multi-layer sets."""
    p = scarce_protocol()
    return (f"--splits {int(splits)} --seed {p['seed']} --size {p['size']} --models {p['members']} "
            f"--epochs {p['epochs']} --batch-size {p['batch_size']} --lr {p['lr']} --pixel-rate {p['pixel_rate']} "
            f"--buffer-mb {p['buffer_mb']} --device {p['device']}" + (f" --upsample {p['upsample']}" if sets else ""))


def scarce_dataset(scene):
    """The dataset name configured for a scene (simple | complex)."""
    return SCARCE[scene]


def scarce_dataset_args(scene):
    entry = wf.dataset_entry(config, scarce_dataset(scene))
    args = ["--dataset", entry["root"]] + (["--dataset-name", entry["name"]] if entry.get("name") else [])
    return " ".join(shlex.quote(str(a)) for a in args)


def scarce_models():
    return list(SCARCE.get("models", []))


def scarce_py(code, *args):
    """Shell fragment: the output of a short Python snippet run inside the job (it reads a file made upstream,
    e.g. which layers a store holds or the qualitative filter kept); keeps rules on the plain `diffact` CLI."""
    words = " ".join(shlex.quote(str(word)) for word in (code, *args))
    return f'"$(python -c {words})"'


def store_layers_arg(done_file):
    """Every layer of a feature store (its complete.json), comma-joined, in the store's forward order."""
    return scarce_py('import json, sys; print(",".join(json.load(open(sys.argv[1]))["layers"]))', done_file)


def csv_layers_arg(path, column, where, value):
    """Comma-joined `column` of the CSV rows whose `where` column equals `value` (as text)."""
    return scarce_py('import sys, pandas as pd; f = pd.read_csv(sys.argv[1]); '
                     'print(",".join(f.loc[f[sys.argv[3]].astype(str) == sys.argv[4], sys.argv[2]].astype(str)))',
                     path, column, where, value)


def scarce_alt(names):
    import re

    return "|".join(re.escape(n) for n in names) or "^$"


def scarce_t2_unavailable(model, layer_set):
    return ((SCARCE_T2.get("unavailable") or {}).get(model) or {}).get(layer_set, "")


def scarce_t2_combined():
    """table2.combined: name → {parts: [[model, layer set], ...], paper_method, note}."""
    return dict(SCARCE_T2.get("combined") or {})


def scarce_t2_combined_unavailable(name):
    """Why a combined entry cannot run: the first of its parts the profile marks unavailable ('' = it runs)."""
    for model, layer_set in scarce_t2_combined()[name]["parts"]:
        why = scarce_t2_unavailable(model, layer_set)
        if why:
            return f"{model} {layer_set}: {why}"
    return ""


def scarce_t2_runs():
    """(model, layer set) pairs of Table 2 that run on this profile; ("combined", name) for several stores."""
    runs = [(m, s) for m in scarce_models() for s in SCARCE_T2.get("layer_sets", []) if not scarce_t2_unavailable(m, s)]
    return runs + [(SCARCE_COMBINED, n) for n in scarce_t2_combined() if not scarce_t2_combined_unavailable(n)]


def scarce_t2_parts(model, layer_set):
    """[(store label, model, layer set)] read by one Table 2 run: the model's store, or a combined entry's parts
    (labelled by model, or model-set where one model gives two parts)."""
    if model != SCARCE_COMBINED:
        return [(model, model, layer_set)]
    parts = [tuple(p) for p in scarce_t2_combined()[layer_set]["parts"]]
    models = [m for m, _ in parts]
    return [(m if models.count(m) == 1 else f"{m}-{s}", m, s) for m, s in parts]


def scarce_t2_stores(model, layer_set):
    return [wf.store_done(config, scarce_dataset("simple"), m, s) for _, m, s in scarce_t2_parts(model, layer_set)]


def scarce_t2_sources_arg(model, layer_set, stores):
    """--store/--layers of `diffact scarce`: every layer of each store (its complete.json), one pair per part."""
    parts = scarce_t2_parts(model, layer_set)
    labelled = len(parts) > 1  # one store needs no label (its layers keep their names)
    return " ".join(f"--store {label + '=' if labelled else ''}{os.path.dirname(done)} --layers {store_layers_arg(done)}"
                    for (label, _, _), done in zip(parts, stores))


def scarce_t2_plan_json():
    """Every Table 2 entry of the profile for the notebook: model, family, layer set, why it cannot run."""
    plan = [{"model": m, "family": wf.model_entry(config, m)["family"], "layer_set": s,
             "unavailable": scarce_t2_unavailable(m, s)} for m in scarce_models() for s in SCARCE_T2.get("layer_sets", [])]
    plan += [{"model": SCARCE_COMBINED, "family": SCARCE_COMBINED, "layer_set": name,
              "paper_method": entry.get("paper_method", ""), "note": entry.get("note", ""),
              "parts": [list(p) for p in entry["parts"]], "unavailable": scarce_t2_combined_unavailable(name)}
             for name, entry in scarce_t2_combined().items()]
    return shlex.quote(json.dumps(plan))
