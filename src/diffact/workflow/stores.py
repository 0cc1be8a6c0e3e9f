"""Which feature stores a profile's targets need, and which of them one ``diffact extract-group`` job writes.

:func:`requested_stores` lists every store some rule reads (``diffact budget`` sizes the same list). With
``extraction.group: layer_set`` the unsharded stores of one model and layer set are written by one job per model
load (:func:`extract_groups`; workflow/rules/extract.smk defines one rule per group): in the demo a store's
extraction takes ~1 s and the job's Python start-up and imports ~5.5 s, so 52 jobs became 8 (measured without the
preload server; with it, the imports are paid once per run, and grouping saves the per-job model load and
Snakemake's per-job overhead). A group joins
stores across datasets and noise draws, never across layer sets: a set may be derived from another store's
results (the DiTs' practical set from a screen), and joining it with that screen's store would be a cycle.

A group is one job to Snakemake: when one of its stores is missing or outdated, the whole job reruns. Its other
stores then extract nothing (their shards are current; with none missing the model is not even loaded), but their
complete.json is written again, so the rules that read them rerun too. That is the price of grouping, which is why
it is opt-in: worth it where a store's job is mostly start-up (the demo), not for hours-long stores.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from diffact.utils.errors import ConfigError
from diffact.workflow import compare, correspondence, scarce
from diffact.workflow.extract import extract_args, extraction_settings, extraction_shards, store_dir, store_done
from diffact.workflow.profile import model_entry

# extraction.group: `store` = one extract job per store (the default; the paper profile's GPU jobs run side by
# side), `layer_set` = one extract-group job per model, layer set and model load.
GROUP_MODES = ("store", "layer_set")


def group_mode(config: dict) -> str:
    mode = (config.get("extraction") or {}).get("group", "store")
    if mode not in GROUP_MODES:
        raise ConfigError(f"extraction.group: expected one of {', '.join(GROUP_MODES)}, got {mode!r}")
    return mode


def table1_roles(settings: dict) -> list[str]:
    """The splits whose stores Table 1 reads: trn and val to train, val for the NN on the paper protocol, test
    for the heldout numbers."""
    methods, protocols = settings["methods"], settings["protocols"]
    roles = []
    if "trained" in methods:
        roles += ["trn", "val"]
    if "nn" in methods and "paper" in protocols:
        roles.append("val")
    if "heldout" in protocols:
        roles.append("test")
    return list(dict.fromkeys(roles))


def requested_stores(config: dict) -> list[tuple[str, str, str, str]]:
    """(dataset, model, layer set, who needs it) for every store some target depends on, in DAG order (a store
    may appear more than once)."""
    out = []
    # The NN screens and practical_nn stream (issue #19): no store of the screening datasets.
    settings = correspondence.table1_settings(config)
    if settings:
        for entry in correspondence.table1_entries(config):
            if not entry.runs:
                continue
            for role in table1_roles(settings):
                # corr_train reads every noise draw of trn and val (noise: draws); nn and heldout read draw 0
                datasets = (correspondence.role_datasets(config, role) if "trained" in settings["methods"]
                            else [correspondence.split_dataset(config, role)])
                for draw, dataset in enumerate(datasets):
                    who = f"Table 1 ({role}{f', noise draw {draw}' if draw else ''})"
                    out.extend((dataset, model, layer_set, who) for model, layer_set in entry.parts)
    # The property maps and Fig 3's PCA maps stream from the model (property_maps, pca_maps: issue #19), and the
    # figures read the small figure-maps files they write: neither needs a store.
    section = config.get("scarce") or {}
    if section:
        simple = section["simple"]
        for model, name in scarce.t2_runs(config):
            out.extend((simple, part_model, layer_set, "Table 2 right" + (", combined" if model == scarce.COMBINED
                                                                          else "") + " (scarce_set)")
                       for _, part_model, layer_set in scarce.t2_parts(config, model, name))
        if section.get("screen"):
            filtered = compare.reads_filtered_store(config)  # those stores: the scarce_filtered_store rule
            for model in section.get("models", []) if not filtered else []:
                for scene in scarce.SCENES:
                    out.append((section[scene], model, compare.store_set(config), "Tables 3-6 (scarce_screen)"))
            for model in section.get("models", []):
                budget = compare.budget(config, model)
                if not isinstance(budget, int):
                    out.append((simple, model, budget, "channel budget (scarce_compare)"))
    return out


@dataclass
class ExtractGroup:
    """Stores of one model and layer set that one ``diffact extract-group`` job writes (one model load)."""

    rule: str                                           # the Snakemake rule that writes them
    model: str
    layer_set: str
    datasets: list[str] = field(default_factory=list)   # one per store, in the order the job writes them

    def done_files(self, config: dict) -> list[str]:
        """The stores' complete.json: the rule's outputs."""
        return [store_done(config, dataset, self.model, self.layer_set) for dataset in self.datasets]

    def store_args(self, config: dict) -> str:
        """``--store ARGS`` per store: each the arguments ``diffact extract`` gets for it alone."""
        return " ".join(
            "--store " + shlex.quote(f"{extract_args(config, dataset, self.model, self.layer_set)} "
                                     f"--out {shlex.quote(store_dir(config, dataset, self.model, self.layer_set))} "
                                     "--check-key")
            for dataset in self.datasets)


def model_load(config: dict, dataset: str, model: str) -> tuple:
    """What ``diffact extract`` loads the model with for a store (the rest of its arguments is per store)."""
    entry = model_entry(config, model)
    return (entry["source"], entry.get("revision"), entry.get("variant"), entry["family"],
            extraction_settings(config, dataset, model).dtype)


def extract_groups(config: dict) -> list[ExtractGroup]:
    """The extract-group jobs of the profile (none unless ``extraction.group: layer_set``): the requested
    unsharded stores of each (model, layer set, model load), where there are at least two (a lone store keeps
    its `extract` job), in the order the stores are requested."""
    if group_mode(config) == "store":
        return []
    members: dict[tuple, list[str]] = {}
    for dataset, model, layer_set, _ in requested_stores(config):
        if extraction_shards(config, dataset, model, layer_set) > 1:
            continue  # its shard jobs fill it; the extract job only merges
        datasets = members.setdefault((model, layer_set, model_load(config, dataset, model)), [])
        if dataset not in datasets:
            datasets.append(dataset)
    groups, names = [], set()
    for (model, layer_set, _), datasets in members.items():
        if len(datasets) < 2:
            continue
        base = "extract_group_" + re.sub(r"\W", "_", f"{model}_{layer_set}")
        name, n = base, 1
        while name in names:  # the same model and set loaded two ways (e.g. a dataset's own dtype)
            n += 1
            name = f"{base}_{n}"
        names.add(name)
        groups.append(ExtractGroup(name, model, layer_set, datasets))
    return groups
