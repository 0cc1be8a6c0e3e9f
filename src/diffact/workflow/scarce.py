"""Label-scarce segmentation (paper §2.10; pixel-classifier ensemble, DDPM-seg protocol): the ``scarce`` section of a
profile → the demo DDPM-seg datasets, Table 2 (right) runs and the protocol flags of workflow/rules/scarce.smk (the
§5.2-5.3 comparison that reuses them: :mod:`diffact.workflow.compare`).

Folders: ``<results>/scarce/table2/<model>/<set>.{csv,json}``, ``<results>/scarce/table2/combined/<name>.{csv,json}``
(several stores concatenated, Ours-XL-t).
"""

from __future__ import annotations

import json
import os
import shlex

from diffact.workflow.extract import store_done
from diffact.workflow.profile import alternatives, dataset_entry, model_entry, optional_flags, \
    results_dir

COMBINED = "combined"  # the model wildcard of a Table 2 entry made of several stores (table2.combined)
SCENES = ("simple", "complex")
# Torch threads of a label-scarce job when neither scarce.protocol.threads nor resources.<stage>.threads says:
# the small MLPs run fastest on one thread on a busy machine (`diffact scarce --threads`).
THREADS = 1
# scarce.protocol keys → `diffact scarce` / `scarce-screen` flags; a key the profile leaves out is the command's
# own paper default (docs/paper.md §2.10). --upsample only acts on multi-layer sets (not on a screen).
PROTOCOL_FLAGS = {"seed": "--seed", "size": "--size", "members": "--models", "epochs": "--epochs",
                  "batch_size": "--batch-size", "lr": "--lr", "pixel_rate": "--pixel-rate", "buffer_mb": "--buffer-mb",
                  "device": "--device"}


def section(config: dict) -> dict:
    return config.get("scarce") or {}


def protocol(config: dict) -> dict:
    return section(config).get("protocol") or {}


def threads(config: dict) -> int:
    """The threads a label-scarce job asks for unless its resource stage sets them."""
    return protocol(config).get("threads", THREADS)


def protocol_args(config: dict, splits_from: dict, sets: bool = True) -> str:
    """The protocol flags of `diffact scarce` / `scarce-screen` (everything but stores, dataset, layers, threads):
    ``--splits`` from ``splits_from`` (the table's own section), the rest from scarce.protocol, each only when the
    profile sets it. ``sets=False`` (a screen: every activation alone) leaves out --upsample."""
    flags = optional_flags(splits_from, {"splits": "--splits"})
    more = optional_flags(protocol(config), {**PROTOCOL_FLAGS, **({"upsample": "--upsample"} if sets else {})})
    return " ".join(filter(None, [flags, more]))


def dataset(config: dict, scene: str) -> str:
    """The dataset name configured for a scene (simple | complex)."""
    return section(config)[scene]


def dataset_args(config: dict, scene: str) -> str:
    entry = dataset_entry(config, dataset(config, scene))
    args = ["--dataset", entry["root"]] + (["--dataset-name", entry["name"]] if entry.get("name") else [])
    return " ".join(shlex.quote(str(a)) for a in args)


def models(config: dict) -> list[str]:
    return list(section(config).get("models", []))


def model_pattern(config: dict) -> str:
    return alternatives(models(config))


# ---- demo DDPM-seg datasets -------------------------------------------------------------------------------------


def demo_data_args(config: dict) -> str:
    """``--train``/``--test`` image counts of make-demo-seg when scarce.demo_data sets them."""
    return optional_flags(section(config).get("demo_data") or {}, {"train": "--train", "test": "--test"})


# ---- Table 2 (right): named layer sets alone on the simple dataset ---------------------------------------------


def table2(config: dict) -> dict:
    return section(config).get("table2") or {}


def table2_dir(config: dict) -> str:
    return f"{results_dir(config)}/scarce/table2"


def t2_unavailable(config: dict, model: str, layer_set: str) -> str:
    return ((table2(config).get("unavailable") or {}).get(model) or {}).get(layer_set, "")


def t2_combined(config: dict) -> dict:
    """table2.combined: name → {parts: [[model, layer set], ...], paper_method, note}."""
    return dict(table2(config).get("combined") or {})


def t2_combined_unavailable(config: dict, name: str) -> str:
    """Why a combined entry cannot run: the first of its parts the profile marks unavailable ('' = it runs)."""
    for model, layer_set in t2_combined(config)[name]["parts"]:
        why = t2_unavailable(config, model, layer_set)
        if why:
            return f"{model} {layer_set}: {why}"
    return ""


def t2_runs(config: dict) -> list[tuple[str, str]]:
    """(model, layer set) pairs of Table 2 that run on this profile; (COMBINED, name) for several stores."""
    if not table2(config):
        return []
    runs = [(m, s) for m in models(config) for s in table2(config).get("layer_sets", [])
            if not t2_unavailable(config, m, s)]
    return runs + [(COMBINED, n) for n in t2_combined(config) if not t2_combined_unavailable(config, n)]


def t2_parts(config: dict, model: str, layer_set: str) -> list[tuple[str, str, str]]:
    """[(store label, model, layer set)] read by one Table 2 run: the model's store, or a combined entry's parts
    (labelled by model, or model-set where one model gives two parts)."""
    if model != COMBINED:
        return [(model, model, layer_set)]
    parts = [tuple(p) for p in t2_combined(config)[layer_set]["parts"]]
    names = [m for m, _ in parts]
    return [(m if names.count(m) == 1 else f"{m}-{s}", m, s) for m, s in parts]


def t2_stores(config: dict, model: str, layer_set: str) -> list[str]:
    return [store_done(config, dataset(config, "simple"), m, s) for _, m, s in t2_parts(config, model, layer_set)]


def t2_sources_arg(config: dict, model: str, layer_set: str, stores: list[str]) -> str:
    """--store/--layers of `diffact scarce`: every layer of each store (``--layers all``), one pair per part."""
    parts = t2_parts(config, model, layer_set)
    labelled = len(parts) > 1  # one store needs no label (its layers keep their names)
    return " ".join(f"--store {label + '=' if labelled else ''}{os.path.dirname(done)} --layers all"
                    for (label, _, _), done in zip(parts, stores))


def t2_json(config: dict) -> list[str]:
    return [f"{table2_dir(config)}/{m}/{s}.json" for m, s in t2_runs(config)]


def t2_plan_json(config: dict) -> str:
    """Every Table 2 entry of the profile for the notebook (shell-quoted JSON): model, family, layer set, why it
    cannot run."""
    if not (section(config) and table2(config)):
        return "'[]'"
    plan = [{"model": m, "family": model_entry(config, m)["family"], "layer_set": s,
             "unavailable": t2_unavailable(config, m, s)} for m in models(config)
            for s in table2(config).get("layer_sets", [])]
    plan += [{"model": COMBINED, "family": COMBINED, "layer_set": name,
              "paper_method": entry.get("paper_method", ""), "note": entry.get("note", ""),
              "parts": [list(p) for p in entry["parts"]], "unavailable": t2_combined_unavailable(config, name)}
             for name, entry in t2_combined(config).items()]
    return shlex.quote(json.dumps(plan))


def targets(config: dict) -> list[str]:
    if not (section(config) and table2(config)):
        return []
    return [f"{table2_dir(config)}/{m}/{s}.csv" for m, s in t2_runs(config)]


def figure_names(config: dict) -> list[str]:
    return [f"table2_right.{ext}" for ext in ("csv", "tex", "md")] if section(config) and table2(config) else []
