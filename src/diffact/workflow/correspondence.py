"""Semantic correspondence (workflow/rules/correspondence.smk): the ``correspondence`` section of a profile → the NN
PCK screen, the practical sets chosen by our own screen, and the Table 1 experiment grid with the paths and
arguments of its rules (pure dict logic: no torch, cheap at DAG time).

The ``correspondence.table1`` config section names the models (default: every model of the profile),
the layer sets (paper Table 1: ``legacy``, ``practical``, ``amalgamation``; docs/paper.md §2.6), the methods
(``nn``, ``trained``), the protocols (``paper``, ``heldout``), the SPair datasets per split and the
training settings. An *entry* is one row group of the table: a (model, layer set) or a named
multi-model combination (Ours-XL-t: SDXL practical ⊕ SD1.5 amalgamation ⊕ PGv2 amalgamation; docs/paper.md §5).

A model can lack layers a paper set names (a smaller U-Net with fewer blocks per ViT than Ours-XL's
block5/block7; the demo U-Nets have the paper's block counts and lack none). Such entries are declared under ``unavailable`` (model → set → reason) and
appear in the table with the reason instead of running; ``substitutes`` (model → set → other set) runs a
variant set instead, with a note. Checking this at DAG time would need diffusers (seconds per call), so
the declaration is data and ``tests/test_correspondence_plan.py`` checks it against the demo U-Nets.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field

from diffact.utils.errors import ConfigError
from diffact.workflow.extract import extract_args, store_dir, store_done
from diffact.workflow.profile import RANDOM_SUFFIX, dataset_entry, dataset_input, model_input, noise_draw_dataset, \
    optional_flags, results_dir, spair_subset_args

COMBINED_SET = "combined"  # the layer-set label of multi-model entries
SPLIT_ROLES = ("trn", "val", "test")
TRAINED_ROLES = ("trn", "val")  # the splits corr-train reads, with noise draws
NOISE_MODES = ("fixed", "draws", "stream")

# Paper values (docs/paper.md §2.8) used when the config leaves a key out; the demo config overrides the sizes
# and the schedule.
TABLE1_DEFAULTS: dict = {
    "layer_sets": ["legacy", "practical", "amalgamation"],
    "methods": ["nn", "trained"],
    "protocols": ["paper", "heldout"],
    "val_subset": "val-360",
    "test_subset": "test-360",
    "select_metric": "pck_img@0.10",
    "feature_size": 128,
    "eval_size": 512,
    "epochs": 2,
    "pairs_per_epoch": 5000,
    "eval_every": 500,
    "lr": 5.0e-4,
    "weight_decay": 0.01,
    "device": "auto",
    # GDF re-extracts every training and validation image with a new VAE sample and new noise at each visit
    # (task-corres.py get_hyperfeats runs the extractor on both images of each pair), so noise acts as augmentation and the max over validations
    # is also one over noise draws. ``draws`` approximates that with K stored draws per image, one sampled
    # per visit (K = 4 is ours: GDF's draws are unbounded); ``fixed`` uses one draw throughout.
    "noise": "draws",
    "noise_draws": 4,
    "combined": {},
    "unavailable": {},
    "substitutes": {},
}


@dataclass(frozen=True)
class Table1Entry:
    """One (model, layer set) or multi-model combination of Table 1.

    ``parts``: (model, layer set actually extracted) per model, in concatenation order.
    ``unavailable``: why it cannot run on this profile ("" when it runs). ``note``: shown in the table.
    """

    name: str
    layer_set: str
    parts: tuple[tuple[str, str], ...]
    unavailable: str = ""
    note: str = ""
    paper_method: str = ""
    families: tuple[str, ...] = field(default=())

    @property
    def runs(self) -> bool:
        return not self.unavailable

    @property
    def n_models(self) -> int:
        return len(self.parts)

    @property
    def folder(self) -> str:
        return f"{self.name}/{self.layer_set}"


def table1_settings(config: dict) -> dict:
    """The ``correspondence.table1`` section merged over the paper defaults (seed: the global seed)."""
    section = (config.get("correspondence") or {}).get("table1")
    if section is None:
        return {}
    merged = {**TABLE1_DEFAULTS, "seed": config.get("seed", 0), **section}
    if "models" not in merged:
        merged["models"] = [m for m in config["models"]]
    unknown = [m for m in merged["models"] if m not in config["models"]]
    if unknown:
        raise ConfigError(f"correspondence.table1.models names unknown models {unknown}; config/models has {', '.join(config['models'])}")
    if "datasets" not in merged:
        raise ConfigError("correspondence.table1.datasets must name the SPair dataset of each split (trn, val, test)")
    missing = [r for r in SPLIT_ROLES if r not in merged["datasets"]]
    if missing:
        raise ConfigError(f"correspondence.table1.datasets lacks {missing} (needs trn, val and test)")
    for role in SPLIT_ROLES:
        name = merged["datasets"][role]
        entry = config.get("datasets", {}).get(name)
        if entry is None:
            raise ConfigError(f"correspondence.table1.datasets.{role} = {name!r} is not in config/datasets")
        split = entry.get("split", "test")
        if entry.get("kind") != "spair" or split != role:
            raise ConfigError(
                f"correspondence.table1.datasets.{role} = {name!r} must be an SPair dataset of split {role!r}, "
                f"got kind {entry.get('kind')!r}, split {split!r}")
    for role, key in (("val", "val_subset"), ("test", "test_subset")):
        # A dataset entry's subset is the images its stores hold: the pairs Table 1 scores there must be that subset.
        name = merged["datasets"][role]
        stored = config["datasets"][name].get("subset")
        if stored and str(stored) != str(merged.get(key) or "all"):
            raise ConfigError(f"correspondence.table1.{key} = {merged.get(key)!r}, but datasets.{name}.subset = "
                              f"{stored!r}: its stores hold only that subset's images; make them the same")
    if merged["noise"] not in NOISE_MODES:
        raise ConfigError(f"correspondence.table1.noise = {merged['noise']!r}; expected one of {', '.join(NOISE_MODES)}")
    draws = merged["noise_draws"]
    if merged["noise"] == "draws" and (not isinstance(draws, int) or isinstance(draws, bool) or draws < 2):
        raise ConfigError(f"correspondence.table1.noise_draws = {draws!r}; noise: draws needs an integer ≥ 2 "
                          "(noise: fixed is one draw)")
    return merged


def noise_draws(settings: dict) -> int:
    """Stored noise draws per training and validation image (1 with ``noise: fixed``, 0 with ``stream``)."""
    return {"draws": int(settings["noise_draws"]), "fixed": 1, "stream": 0}[settings["noise"]]


def streams(config: dict) -> bool:
    """``noise: stream``: corr-train (and the NN on val) extract every trn/val image anew at each visit, as GDF does
    (``corr-train --train-extract``), so no trn or val store is planned."""
    return table1_settings(config).get("noise") == "stream"


def role_datasets(config: dict, role: str) -> list[str]:
    """The datasets whose stores a Table 1 run reads for split ``role``: one per noise draw for trn and val
    (``<dataset>``, ``<dataset>.draw1``, ...; :func:`diffact.workflow.noise_draw_dataset`), the test split's
    only (heldout scores one fixed draw)."""
    dataset = split_dataset(config, role)
    if streams(config):  # every split's features are extracted in the job that reads them
        return []
    draws = noise_draws(table1_settings(config)) if role in TRAINED_ROLES else 1
    return [noise_draw_dataset(dataset, k) for k in range(draws)]


def _attention_note(family: str, layer_set: str) -> str:
    """The paper's amalgamation set adds aggregated cross-attention maps (docs/paper.md §2.5); the extraction here
    stores the set's activations only, so say so in the table."""
    from diffact.extract.layersets import load_set_spec

    attention = load_set_spec(family, layer_set).get("attention")
    return f"'{layer_set}' without the {attention} attention maps the paper adds" if attention else ""


def _part(config: dict, settings: dict, model: str, layer_set: str) -> tuple[tuple[str, str], str, str]:
    """((model, set to extract), why unavailable, note) for one model's part."""
    family = config["models"][model]["family"]
    reason = (settings["unavailable"].get(model) or {}).get(layer_set, "")
    substitute = (settings["substitutes"].get(model) or {}).get(layer_set)
    if substitute and not reason:
        notes = [f"{model} runs the variant set '{substitute}' instead of '{layer_set}'", _attention_note(family, substitute)]
        return (model, substitute), "", "; ".join(n for n in notes if n)
    return (model, layer_set), (f"{model}/{layer_set}: {reason}" if reason else ""), _attention_note(family, layer_set)


def table1_entries(config: dict) -> list[Table1Entry]:
    """Every entry of Table 1 for this profile, single-model entries first (model order × set order)."""
    settings = table1_settings(config)
    if not settings:
        return []
    entries = []
    for model in settings["models"]:
        family = config["models"][model]["family"]
        for layer_set in settings["layer_sets"]:
            part, reason, note = _part(config, settings, model, layer_set)
            entries.append(Table1Entry(model, layer_set, (part,), reason, note, families=(family,)))
    for name, spec in (settings["combined"] or {}).items():
        if name in settings["models"] or name in config["models"]:
            raise ConfigError(f"correspondence.table1.combined.{name}: the name is already a model name")
        parts_spec = spec.get("parts") if isinstance(spec, dict) else None
        if not parts_spec or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in parts_spec):
            raise ConfigError(f"correspondence.table1.combined.{name}.parts must be a list of [model, layer set]")
        parts, reasons, notes = [], [], [spec.get("note", "")] if spec.get("note") else []
        for model, layer_set in parts_spec:
            if model not in config["models"]:
                raise ConfigError(f"correspondence.table1.combined.{name}: unknown model {model!r}")
            part, reason, note = _part(config, settings, model, layer_set)
            parts.append(part)
            reasons += [reason] if reason else []
            notes += [note] if note else []
        entries.append(Table1Entry(name, COMBINED_SET, tuple(parts), "; ".join(reasons), "; ".join(notes),
                                   paper_method=spec.get("paper_method", ""),
                                   families=tuple(config["models"][m]["family"] for m, _ in parts)))
    return entries


def find_entry(config: dict, name: str, layer_set: str) -> Table1Entry:
    for entry in table1_entries(config):
        if entry.name == name and entry.layer_set == layer_set:
            return entry
    raise ConfigError(f"no Table 1 entry {name}/{layer_set} in correspondence.table1")


def split_dataset(config: dict, role: str) -> str:
    """The dataset name (config/datasets) that holds split ``role`` (trn, val or test)."""
    return table1_settings(config)["datasets"][role]


def result_runs(config: dict) -> list[tuple[Table1Entry, str, str]]:
    """(entry, method, protocol) of every result file the table needs (runnable entries only)."""
    settings = table1_settings(config)
    return [(e, m, p) for e in table1_entries(config) if e.runs for m in settings["methods"] for p in settings["protocols"]]


# ---- the NN PCK screen of every activation (paper §2.8 protocol) ---------------------------------------------


def section(config: dict) -> dict:
    return config.get("correspondence") or {}


def corr_dir(config: dict) -> str:
    return f"{results_dir(config)}/correspondence"


def screen_dataset(config: dict) -> str:
    """The SPair dataset the NN PCK screen (and the practical sets' test score) runs on."""
    return section(config)["dataset"]


def screen_layer_set(config: dict) -> str:
    return section(config)["layer_set"]


def screen_input(config: dict, model: str, dataset: str | None = None) -> list[str]:
    """What a streamed screen needs: a built demo model and the dataset (the screens never store the pool, issue #19;
    nor does ``practical_nn``, which streams the same extraction)."""
    dataset = dataset or screen_dataset(config)
    return model_input(config, model) + dataset_input(config, dataset)


def screen_source_args(config: dict, model: str, dataset: str | None = None) -> str:
    """The feature source of ``pck-screen`` and ``practical_nn``'s ``corr-evaluate``: exactly the ``diffact extract``
    arguments of the screened pool store (model, layer set, dataset entry with split and subset, extraction
    settings), which give the scores of that store byte for byte (tests/test_pck_stream.py) without writing it."""
    return extract_args(config, dataset or screen_dataset(config), model, screen_layer_set(config))


def dataset_root(config: dict, dataset: str | None = None) -> str:
    return dataset_entry(config, dataset or screen_dataset(config))["root"]


def dataset_split(config: dict, dataset: str | None = None, default: str = "test") -> str:
    return dataset_entry(config, dataset or screen_dataset(config)).get("split", default)


def subset_arg(config: dict, dataset: str | None = None) -> str:
    """The screened dataset's (default: correspondence.dataset) named subset (its store holds only those images)
    and its subset policy (--subset-fallback, --no-official-counts), as pck-screen flags."""
    dataset = dataset or screen_dataset(config)
    subset = dataset_entry(config, dataset).get("subset")
    return f"--subset {subset} {spair_subset_args(config, dataset)}".strip() if subset else ""


def eval_size_arg(config: dict) -> str:
    """``--eval-size`` when the profile sets one (else the command's paper default)."""
    return optional_flags(section(config), {"eval_size": "--eval-size"})


def pixel_reference(config: dict) -> bool:
    """Whether the raw-pixel patch reference is screened (correspondence.pixel_patch set)."""
    return bool(section(config).get("pixel_patch"))


def models(config: dict) -> list[str]:
    """The screened models, and each built model's random-weights twin with ``random_reference``."""
    corr = section(config)
    out = list(corr.get("models", []))
    if corr.get("random_reference", False):
        out += [f"{m}{RANDOM_SUFFIX}" for m in corr.get("models", []) if config["models"][m].get("build")]
    return out


def screen_csv(config: dict, model: str) -> str:
    return f"{corr_dir(config)}/{model}/nn_pck.csv"


def pck_table_labels(config: dict, model_csvs: list[str], pixels_csv: str | list) -> str:
    """``label=csv`` arguments of pck-table: trained or random-weights per model, and the pixel reference."""
    labels = [f"{'random-weights' if m.endswith(RANDOM_SUFFIX) else 'trained'}={p}"
              for m, p in zip(models(config), model_csvs)]
    return " ".join(labels + ([f"pixels={pixels_csv}"] if pixel_reference(config) else []))


# ---- a practical set chosen by our own screen, for families the paper gives none (the DiTs; ours) --------------


def practical(config: dict) -> dict:
    return section(config).get("practical") or {}


def practical_dir(config: dict) -> str:
    return f"{corr_dir(config)}/practical"


def practical_models(config: dict) -> list[str]:
    """Models whose practical set the workflow chooses by its own screen (correspondence.practical)."""
    return list(practical(config).get("models", []))


def practical_select_on(config: dict) -> str:
    """The validation dataset whose screen chooses the practical sets."""
    return practical(config)["select_on"]


def practical_set_args(config: dict) -> str:
    """``--top``/``--metric`` of practical-set when the profile sets them (else the command's defaults)."""
    return optional_flags(practical(config), {"top": "--top", "metric": "--metric"})


def practical_sizes_arg(config: dict) -> str:
    """``--feature-size``/``--eval-size`` of the practical sets' NN score: correspondence's own, else Table 1's."""
    corr = section(config)
    sizes = {**{k: v for k, v in (corr.get("table1") or {}).items() if k == "feature_size"}, **corr}
    return optional_flags(sizes, {"feature_size": "--feature-size", "eval_size": "--eval-size"})


# ---- Table 1: paths and arguments of one entry's runs --------------------------------------------------------


def table1_dir(config: dict) -> str:
    return f"{corr_dir(config)}/table1"


def table1_root(config: dict) -> str:
    """The SPair root every Table 1 run reads labels from (the training split's dataset)."""
    return dataset_entry(config, split_dataset(config, "trn"))["root"] if table1_settings(config) else ""


def entry_stores(config: dict, entry: str, layer_set: str, role: str) -> list[str]:
    """complete.json of each model's store of the dataset that holds split ``role``, in concatenation order; for
    trn and val with ``noise: draws``, one store per noise draw of each model."""
    return [store_done(config, dataset, model, extracted) for model, extracted in find_entry(config, entry, layer_set).parts
            for dataset in role_datasets(config, role)]


def stream_model_inputs(config: dict, entry: str, layer_set: str, method: str = "trained",
                        protocol: str = "paper") -> list[str]:
    """What a streaming Table 1 job waits for instead of stores: its models (a demo model's build), or nothing."""
    if not (streams(config) and (method == "trained" or eval_streams(config, method, protocol))):
        return []
    return [f for model, _ in find_entry(config, entry, layer_set).parts for f in model_input(config, model)]


STREAM_FLAGS = {"--train-store": "--train-extract", "--val-store": "--val-extract"}


def draw_store_args(config: dict, flag: str, entry: str, layer_set: str, role: str) -> str:
    """``flag`` once per model, in concatenation order; a model's noise-draw stores joined by commas. With ``noise:
    stream``, the flag's ``--*-extract`` twin with each model's ``diffact extract`` arguments of the split instead."""
    if streams(config):
        dataset = split_dataset(config, role)
        return " ".join(f"{STREAM_FLAGS[flag]} {shlex.quote(extract_args(config, dataset, model, extracted))}"
                        for model, extracted in find_entry(config, entry, layer_set).parts)
    datasets = role_datasets(config, role)
    return " ".join(f"{flag} " + ",".join(store_dir(config, dataset, model, extracted) for dataset in datasets)
                    for model, extracted in find_entry(config, entry, layer_set).parts)


def store_args(flag: str, done_files: list[str]) -> str:
    return " ".join(f"{flag} {os.path.dirname(p)}" for p in done_files)


def eval_role(protocol: str) -> str:
    """The split a Table 1 number is scored on: validation (paper protocol) or test (heldout)."""
    return "val" if protocol == "paper" else "test"


def subset_policy(config: dict, role: str) -> str:
    """The subset policy flags of the dataset that holds split ``role`` (its subset_fallback, official_counts)."""
    return spair_subset_args(config, split_dataset(config, role))


def eval_stores(config: dict, entry: str, layer_set: str, method: str, protocol: str) -> list[str]:
    # trained + paper reads the validation scores logged during training: no store needed.
    if method == "trained" and protocol == "paper" or eval_streams(config, method, protocol):
        return []
    return entry_stores(config, entry, layer_set, eval_role(protocol))


def eval_streams(config: dict, method: str, protocol: str) -> bool:
    """Whether a Table 1 number extracts its features rather than reading a store: with ``noise: stream`` every
    number that scores pairs (the NN on val with the first validation's fresh draws; both heldout numbers on test,
    the same draws for both), not trained + paper (it reads corr-train's validation log)."""
    return streams(config) and not (method == "trained" and protocol == "paper")


def eval_source_args(config: dict, entry: str, layer_set: str, method: str, protocol: str, stores: list[str]) -> str:
    """corr-evaluate's feature source: ``--store`` per store read, or the ``--extract`` arguments of a streaming
    number (:func:`eval_stream_args`); one of the two is empty."""
    return store_args("--store", stores) or eval_stream_args(config, entry, layer_set, method, protocol)


def eval_stream_args(config: dict, entry: str, layer_set: str, method: str, protocol: str) -> str:
    """corr-evaluate's ``--extract`` per model and ``--seed`` where the number streams (:func:`eval_streams`)."""
    if not eval_streams(config, method, protocol):
        return ""
    dataset = split_dataset(config, eval_role(protocol))
    return " ".join([f"--extract {shlex.quote(extract_args(config, dataset, model, extracted))}"
                     for model, extracted in find_entry(config, entry, layer_set).parts]
                    + [f"--seed {table1_settings(config)['seed']}"])


def run_dir(config: dict, entry: str, layer_set: str) -> str:
    """The corr-train output folder of an entry."""
    return f"{table1_dir(config)}/{entry}/{layer_set}/run"


def train_options(config: dict) -> str:
    """corr-train's validation subset, sizes, schedule and device (Table 1 settings, paper defaults underneath); it
    keeps only the checkpoint heldout selects (by select_metric), the one any Table 1 number reads."""
    t1 = table1_settings(config)
    return (f"--val-subset {t1.get('val_subset') or 'all'} {subset_policy(config, 'val')} --feature-size {t1['feature_size']} "
            f"--eval-size {t1['eval_size']} --epochs {t1['epochs']} --pairs-per-epoch {t1['pairs_per_epoch']} "
            f"--eval-every {t1['eval_every']} --lr {t1['lr']} --weight-decay {t1['weight_decay']} "
            f"--seed {t1['seed']} --device {t1['device']} --keep-best {t1['select_metric']}")


def eval_subset_arg(config: dict, protocol: str) -> str:
    t1 = table1_settings(config)
    subset = t1.get("val_subset" if protocol == "paper" else "test_subset") or "all"
    return " ".join(filter(None, [subset, subset_policy(config, eval_role(protocol))]))


def eval_options(config: dict) -> str:
    t1 = table1_settings(config)
    return (f"--feature-size {t1['feature_size']} --eval-size {t1['eval_size']} "
            f"--select-metric {t1['select_metric']} --device {t1['device']}")


def entry_labels(config: dict, entry: str, layer_set: str) -> str:
    """The labels corr-evaluate writes into its row (entry, set, models, families, the paper's method, a note)."""
    found = find_entry(config, entry, layer_set)
    labels = {"--entry": found.name, "--layer-set": found.layer_set, "--models": "+".join(m for m, _ in found.parts),
              "--families": "+".join(found.families), "--extracted-sets": "+".join(s for _, s in found.parts),
              "--paper-method": found.paper_method, "--note": found.note}
    return " ".join(f"{k} {shlex.quote(v)}" for k, v in labels.items())


def result_csvs(config: dict) -> list[str]:
    """Every Table 1 number's CSV (runnable entries × methods × protocols)."""
    return [f"{table1_dir(config)}/{e.folder}/{m}-{p}.csv" for e, m, p in result_runs(config)]


def plan_json(config: dict) -> str:
    """Every Table 1 entry for corr-table1 (shell-quoted JSON), runs and the unavailable ones."""
    plan = [{"name": e.name, "layer_set": e.layer_set, "parts": e.parts, "families": e.families,
             "unavailable": e.unavailable, "paper_method": e.paper_method} for e in table1_entries(config)]
    return shlex.quote(json.dumps(plan))


def targets(config: dict) -> list[str]:
    out = [f"{corr_dir(config)}/nn_pck_table.csv"] if section(config) else []
    out += [f"{practical_dir(config)}/practical_nn.csv"] if practical_models(config) else []
    return out + ([f"{corr_dir(config)}/table1.csv"] if table1_settings(config) else [])


def figure_names(config: dict) -> list[str]:
    names = ["demo_nn_pck.csv", "demo_nn_pck_forward.png"] if section(config) else []
    if table1_settings(config):
        names += ["table1_correspondence.csv", "table1_correspondence.tex", "fig01_correspondence.png",
                  "fig01_correspondence.pdf"]
    return names


def pixel_patch_arg(config: dict) -> str:
    """``--patch`` of the raw-pixel reference when the profile sets its size."""
    return optional_flags(section(config), {"pixel_patch": "--patch"})
