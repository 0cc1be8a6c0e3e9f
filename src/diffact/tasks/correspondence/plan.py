"""Config → the Table 1 experiment grid, for the Snakefile (pure dict logic: no torch, cheap at DAG time).

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

from dataclasses import dataclass, field

from diffact.utils.errors import ConfigError

COMBINED_SET = "combined"  # the layer-set label of multi-model entries
SPLIT_ROLES = ("trn", "val", "test")
TRAINED_ROLES = ("trn", "val")  # the splits corr-train reads, with noise draws
NOISE_MODES = ("fixed", "draws")

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
    if merged["noise"] not in NOISE_MODES:
        raise ConfigError(f"correspondence.table1.noise = {merged['noise']!r}; expected one of {', '.join(NOISE_MODES)}")
    draws = merged["noise_draws"]
    if merged["noise"] == "draws" and (not isinstance(draws, int) or isinstance(draws, bool) or draws < 2):
        raise ConfigError(f"correspondence.table1.noise_draws = {draws!r}; noise: draws needs an integer ≥ 2 "
                          "(noise: fixed is one draw)")
    return merged


def noise_draws(settings: dict) -> int:
    """Stored noise draws per training and validation image (1 with ``noise: fixed``)."""
    return int(settings["noise_draws"]) if settings["noise"] == "draws" else 1


def role_datasets(config: dict, role: str) -> list[str]:
    """The datasets whose stores a Table 1 run reads for split ``role``: one per noise draw for trn and val
    (``<dataset>``, ``<dataset>.draw1``, ...; :func:`diffact.workflow.noise_draw_dataset`), the test split's
    only (heldout scores one fixed draw)."""
    from diffact.workflow import noise_draw_dataset

    dataset = split_dataset(config, role)
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
