"""Pre-flight checks of a profile (``diffact check-data``): every dataset root and model reference, before a long run.

Everything is checked and every problem is collected, so one call lists all that is missing or malformed
(a day-long cluster run should not die at hour three on the second dataset). Nothing is loaded: datasets are
checked with their loaders' checkers (SPair-71k, DDPM-seg, ADE20K, Cityscapes), models with
:func:`diffact.models.loading.reference_problems` (local folder complete; hub id in the Hugging Face cache,
or reachable when not offline; single-file checkpoint present).

A *problem* makes the check fail; a *note* is information (e.g. a demo dataset the workflow will build, or a
subset drawn by rule because its file is absent).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from diffact.utils.errors import DataError, DiffactError

# Checkers of the kinds whose modules another part of the project provides; looked up when needed, so a
# missing module is a note ("not checked"), not a crash.
LAYOUT_CHECKERS = {"ade20k": ("diffact.data.ade20k", "check_ade20k"),
                   "cityscapes": ("diffact.data.cityscapes", "check_cityscapes")}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Report:
    """Problems and notes, each prefixed with the config entry it is about."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, subject: str, messages: list[str]) -> None:
        self.problems.extend(f"{subject}: {m}" for m in messages)

    def note(self, subject: str, message: str) -> None:
        self.notes.append(f"{subject}: {message}")

    @property
    def ok(self) -> bool:
        return not self.problems


# ---- config ------------------------------------------------------------------------------------------------

def schema_problems(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation of the config (the workflow's own validate() stops at the first)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"config {where}: {error.message}")
    return problems


# ---- datasets ----------------------------------------------------------------------------------------------

def spair_problems(root: str, splits: list[str], subsets: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(problems, notes) of one SPair-71k root, for the splits and named subsets the profile uses.

    ``subsets``: subset name → its policy (:func:`diffact.data.spair.subset_options`). A subset file that is
    there is read as the run would read it (DHF's val-360/test-360 checked against the released counts unless
    ``official_counts`` is false); a missing DHF file is a problem naming every place looked in, unless the
    policy says ``subset_fallback: draw``; other missing subsets (test-90) are drawn by rule: a note."""
    from diffact.data.spair import (
        DHF_SUBSET_COUNTS,
        DRAWN_SUFFIX,
        SPairDataset,
        check_spair_root,
        drawn_per_category,
        missing_subset_message,
        subset_file_candidates,
    )

    problems = check_spair_root(root, splits=sorted(set(splits)))
    notes = []
    if not Path(root).is_dir():
        return problems, notes
    for subset, policy in sorted(subsets.items()):
        candidates = subset_file_candidates(root, subset)
        if any(p.is_file() for p in candidates):
            try:
                SPairDataset(root, subset=subset, **policy)
            except DiffactError as err:
                problems.append(str(err))
            continue
        if subset in DHF_SUBSET_COUNTS and policy["subset_fallback"] != "draw":
            problems.append(missing_subset_message(root, subset))
            continue
        folders = ", ".join(str(p.parent) for p in candidates)
        try:
            per_category = drawn_per_category(subset)
        except DiffactError as err:
            problems.append(str(err))
            continue
        notes.append(f"subset {subset}: no {candidates[0].name} (looked in {folders}); a deterministic draw "
                     f"of {per_category} pairs per category stands in for it, labelled {subset}{DRAWN_SUFFIX}")
    return problems, notes


def _strictest(a: dict, b: dict) -> dict:
    """Two entries use one subset of one root: draw only if both allow it, check counts if either does."""
    return {"subset_fallback": "draw" if a["subset_fallback"] == b["subset_fallback"] == "draw" else "error",
            "official_counts": a["official_counts"] or b["official_counts"]}


def spair_subset_uses(config: dict) -> list[tuple[str, str]]:
    """(dataset name, subset) of every named SPair subset the profile reads: the entries' own ``subset`` and
    Table 1's ``val_subset`` / ``test_subset`` on its val / test datasets (default val-360 / test-360)."""
    from diffact.workflow.correspondence import TABLE1_DEFAULTS

    datasets = config.get("datasets") or {}
    uses = [(name, str(entry["subset"])) for name, entry in datasets.items() if entry.get("subset")]
    table1 = (config.get("correspondence") or {}).get("table1") or {}
    for role, key in (("val", "val_subset"), ("test", "test_subset")):
        name, subset = (table1.get("datasets") or {}).get(role), table1.get(key, TABLE1_DEFAULTS[key])
        if name in datasets and subset and subset != "all":
            uses.append((name, str(subset)))
    return uses


def ddpmseg_problems(root: str, name: str | None = None) -> list[str]:
    """Every problem of a DDPM-seg dataset folder: layout, class table, and each image/label pair."""
    from diffact.data.ddpmseg import open_ddpmseg, validate_item

    try:
        dataset = open_ddpmseg(root, name=name, validate=False)
    except DiffactError as err:
        return [str(err)]
    problems = []
    for item in dataset.images():
        try:
            validate_item(item, dataset.info)
        except DiffactError as err:
            problems.append(str(err))
    return problems


def folder_dataset_problems(root: str) -> list[str]:
    path = Path(root)
    if not path.is_dir():
        return [f"image folder {root} does not exist"]
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
        return [f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})"]
    return []


def layout_problems(kind: str, root: str, official_counts: bool = True) -> list[str] | None:
    """Problems from the kind's own checker, or None when that checker is not available. ``official_counts``
    False (a dataset entry's ``official_counts: false``, the rehearsal's fixture trees) skips the check of the
    official release's image counts; everything else is still checked."""
    module_name, function = LAYOUT_CHECKERS[kind]
    try:
        checker = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError):
        return None
    try:
        return list(checker(root, official_counts=official_counts))
    except DataError as err:
        return [str(err)]


def check_datasets(config: dict, report: Report) -> None:
    """Every dataset entry; entries that share a root (SPair splits) are checked once for all their splits."""
    from diffact.data.spair import subset_options

    datasets = config.get("datasets") or {}
    spair_roots: dict[str, dict] = {}
    for name, entry in datasets.items():
        if entry.get("kind") == "spair" and not entry.get("build"):
            group = spair_roots.setdefault(str(entry.get("root", "")), {"names": [], "splits": [], "subsets": {}})
            group["names"].append(name)
            group["splits"].append(entry.get("split", "test"))
    for name, subset in spair_subset_uses(config):
        entry = datasets[name]
        group = spair_roots.get(str(entry.get("root", "")))
        if group is None or entry.get("kind") != "spair" or entry.get("build"):
            continue
        try:
            policy = subset_options(entry)
        except DiffactError as err:
            report.add(f"dataset {name}", [str(err)])
            continue
        known = group["subsets"].get(subset)
        group["subsets"][subset] = policy if known is None else _strictest(known, policy)
    for name, entry in datasets.items():
        kind, root = entry.get("kind"), str(entry.get("root", ""))
        subject = f"dataset {name} ({kind}, {root})"
        if entry.get("build"):
            if not Path(root).exists():
                report.note(subject, "a demo dataset; the workflow builds it")
            continue
        if kind == "spair":
            group = spair_roots[root]
            if group["names"][0] == name:  # one check per root, for every split its entries use
                subject = f"dataset {', '.join(group['names'])} (spair, {root})"
                problems, notes = spair_problems(root, group["splits"], group["subsets"])
                report.add(subject, problems)
                for message in notes:
                    report.note(subject, message)
        elif kind == "ddpmseg":
            report.add(subject, ddpmseg_problems(root, entry.get("name")))
        elif kind == "folder":
            report.add(subject, folder_dataset_problems(root))
        elif kind in LAYOUT_CHECKERS:
            found = layout_problems(kind, root, official_counts=entry.get("official_counts", True) is not False)
            if found is None:
                report.note(subject, f"not checked: {'.'.join(LAYOUT_CHECKERS[kind])} is not available")
            else:
                report.add(subject, found)
        else:
            report.add(subject, [f"unknown dataset kind {kind!r}"])


# ---- models ------------------------------------------------------------------------------------------------

def check_models(config: dict, report: Report, offline: bool | None = None) -> None:
    """Every model entry (demo models the workflow builds are notes), and the models the qualitative filter
    reads the architecture of."""
    from diffact.models.loading import reference_problems

    for name, entry in (config.get("models") or {}).items():
        source = str(entry.get("source", ""))
        subject = f"model {name} ({source})"
        if entry.get("build"):
            if not (Path(source) / "model_index.json").is_file():
                report.note(subject, "a demo model; the workflow builds it")
            continue
        report.add(subject, reference_problems(source, revision=entry.get("revision"), config=entry.get("config"),
                                               offline=offline))
    for family, source in ((config.get("properties") or {}).get("filter_models") or {}).items():
        report.add(f"properties.filter_models.{family} ({source})", architecture_problems(str(source)))


def architecture_problems(source: str) -> list[str]:
    """The qualitative filter needs only a U-Net config: a hub id with a built-in config
    (:data:`diffact.models.configs.REFERENCE_UNETS`) or a pipeline folder with unet/config.json."""
    from diffact.models.configs import REFERENCE_UNETS

    if source in REFERENCE_UNETS or (Path(source) / "unet" / "config.json").is_file():
        return []
    return [f"neither a hub id with a built-in U-Net config ({', '.join(REFERENCE_UNETS)}) nor a pipeline folder "
            "with unet/config.json"]


# ---- files the workflow reads -------------------------------------------------------------------------------

def check_segmentation_configs(config: dict, report: Report) -> None:
    """The mmseg config file of every segmentation run of the profile exists (Table 2 left)."""
    if not config.get("segmentation"):
        return
    try:
        from diffact.workflow import segmentation as plan
    except ImportError:
        report.note("segmentation", "not checked: diffact.workflow.segmentation is not available")
        return
    seen = set()
    for dataset, model, layer_set in plan.runs(config):
        try:
            path = plan.mmseg_config(config, dataset, model, layer_set)
        except DiffactError as err:
            report.add(f"segmentation run {dataset}/{model}/{layer_set}", [str(err)])
            continue
        if path not in seen and not Path(path).is_file():
            report.add(f"segmentation run {dataset}/{model}/{layer_set}", [f"mmseg config {path} does not exist"])
        seen.add(path)


# ---- all ---------------------------------------------------------------------------------------------------

def check_profile(config: dict, schema_path: str | Path | None = None, datasets: bool = True, models: bool = True,
                  offline: bool | None = None) -> Report:
    """Check a whole profile: config against the schema and its cross-references (the names it uses for models,
    datasets, layer sets, ...: :func:`diffact.workflow.reference_problems`), then every dataset and model."""
    from diffact.workflow import reference_problems

    report = Report()
    if schema_path is not None:
        report.add("schema", schema_problems(config, schema_path))
    report.add("config", reference_problems(config))  # what the workflow refuses to load
    if datasets:
        check_datasets(config, report)
    if models:
        check_models(config, report, offline=offline)
    check_segmentation_configs(config, report)
    return report
