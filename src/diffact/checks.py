"""Pre-flight checks of a profile (``diffact check-data``): every dataset root and model reference, before a long run.

Everything is checked and every problem is collected, so one call lists all that is missing or malformed
(a day-long cluster run should not die at hour three on the second dataset). Nothing is loaded: datasets are
checked with their kind's checker in :mod:`diffact.data.registry`, the registry extraction lists images with
(SPair-71k, DDPM-seg, ADE20K, Cityscapes, a plain folder), models with
:func:`diffact.models.loading.reference_problems` (local folder complete; hub id in the Hugging Face cache,
or reachable when not offline; single-file checkpoint present).

A *problem* makes the check fail; a *note* is information (e.g. a demo dataset the workflow will build, or a
subset drawn by rule because its file is absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from diffact.utils.errors import ConfigError, DiffactError

if TYPE_CHECKING:
    from diffact.data.registry import RootUse


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


def root_uses(config: dict, report: Report) -> list[RootUse]:
    """The profile's dataset entries grouped by (kind, root), in config order, so a root the entries share (SPair's
    splits) is checked once for all of them; demo entries the workflow builds are left out. An SPair subset
    whose policy is malformed is a problem of its entry."""
    from diffact.data.registry import RootUse
    from diffact.data.spair import subset_options

    datasets = config.get("datasets") or {}
    groups: dict[tuple[str, str], dict] = {}
    for name, entry in datasets.items():
        if not entry.get("build"):
            key = (str(entry.get("kind")), str(entry.get("root", "")))
            groups.setdefault(key, {"entries": {}, "subsets": {}})["entries"][name] = entry
    for name, subset in spair_subset_uses(config):
        entry = datasets[name]
        group = groups.get((str(entry.get("kind")), str(entry.get("root", ""))))
        if group is None or entry.get("kind") != "spair" or entry.get("build"):
            continue
        try:
            policy = subset_options(entry)
        except DiffactError as err:
            report.add(f"dataset {name}", [str(err)])
            continue
        known = group["subsets"].get(subset)
        group["subsets"][subset] = policy if known is None else _strictest(known, policy)
    return [RootUse(kind, root, group["entries"], group["subsets"]) for (kind, root), group in groups.items()]


def check_datasets(config: dict, report: Report) -> None:
    """Every dataset root, with its kind's checker (:mod:`diffact.data.registry`, the registry extraction lists
    images with); entries that share a root (SPair splits) are checked once for all their splits."""
    from diffact.data.registry import build_problems, get_kind

    uses = {name: use for use in root_uses(config, report) for name in use.entries}
    for name, entry in (config.get("datasets") or {}).items():
        root = str(entry.get("root", ""))
        if entry.get("build"):
            subject = f"dataset {name} ({entry.get('kind')}, {root})"
            try:
                report.add(subject, build_problems(str(entry.get("kind")), str(entry["build"])))
            except ConfigError as err:
                report.add(subject, [str(err)])
            if not Path(root).exists():
                report.note(subject, "a demo dataset; the workflow builds it")
            continue
        use = uses[name]
        if next(iter(use.entries)) != name:  # checked with the first entry of its root
            continue
        subject = f"dataset {', '.join(use.entries)} ({use.kind}, {root})"
        try:
            problems, notes = get_kind(use.kind).check(use)
        except ConfigError as err:
            problems, notes = [str(err)], []
        report.add(subject, problems)
        for message in notes:
            report.note(subject, message)


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
