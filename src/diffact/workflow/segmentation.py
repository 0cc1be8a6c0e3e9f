"""Semantic segmentation with mmseg (paper §2.9, Table 2 left): config → the runs, paths and command-line arguments
of workflow/rules/segmentation.smk.

Kept here (importable, tested) so the rules stay thin. The ``segmentation`` section of the config names datasets
(``datasets`` entries of kind ade20k / cityscapes), models, layer sets, the mmseg config per dataset kind (``{family}``
and ``{set}`` filled in per run), the schedule overrides and the multi-model runs (``combined``: ``[model, layers]``
parts).
"""

from __future__ import annotations

import json
import shlex

from diffact.utils.errors import ConfigError
from diffact.workflow.profile import alternatives, dataset_entry, demo_marker, model_entry, model_input, results_dir

LAYOUTS = ("ade20k", "cityscapes")
COMBINED = "combined"


def section(config: dict) -> dict:
    return config.get("segmentation") or {}


def seg_dir(config: dict) -> str:
    return f"{results_dir(config)}/segmentation"


def datasets(config: dict) -> list[str]:
    return list(section(config).get("datasets", []))


def models(config: dict) -> list[str]:
    return list(section(config).get("models", []))


def combined(config: dict) -> dict:
    return dict(section(config).get("combined") or {})


def kind(config: dict, dataset: str) -> str:
    value = dataset_entry(config, dataset)["kind"]
    if value not in LAYOUTS:
        raise ConfigError(f"segmentation.datasets: {dataset} has kind {value!r}; expected one of {', '.join(LAYOUTS)}")
    return value


def root(config: dict, dataset: str) -> str:
    return dataset_entry(config, dataset)["root"]


def data_input(config: dict, dataset: str) -> list[str]:
    """The demo builder's marker for a built dataset; nothing for a real root (checked by `diffact seg-check`)."""
    entry = dataset_entry(config, dataset)
    return [demo_marker(entry)] if entry.get("build") else []


def unavailable(config: dict, model: str, layer_set: str) -> str:
    return ((section(config).get("unavailable") or {}).get(model) or {}).get(layer_set, "")


def runs(config: dict) -> list[tuple[str, str, str]]:
    """(dataset, model, layer set) single-model runs of the profile."""
    return [(d, m, s) for d in datasets(config) for m in models(config) for s in section(config).get("layer_sets", [])
            if not unavailable(config, m, s)]


def run_csv(config: dict, dataset: str, model: str, layer_set: str) -> str:
    return f"{seg_dir(config)}/{dataset}/{model}/{layer_set}.csv"


def history_csv(run_csv_path: str) -> str:
    """A run's validation history, beside its CSV (``seg-train --history``)."""
    return f"{run_csv_path.removesuffix('.csv')}.history.csv"


def baseline_csv(config: dict, dataset: str) -> str:
    return f"{seg_dir(config)}/{dataset}/constant_baseline.csv"


def run_csvs(config: dict) -> list[str]:
    """Every run CSV of the profile: single-model runs, then multi-model runs."""
    out = [run_csv(config, d, m, s) for d, m, s in runs(config)]
    return out + [run_csv(config, d, COMBINED, name) for d in datasets(config) for name in combined(config)]


def history_csvs(config: dict) -> list[str]:
    """The validation history of every run of :func:`run_csvs`."""
    return [history_csv(path) for path in run_csvs(config)]


def baseline_csvs(config: dict) -> list[str]:
    return [baseline_csv(config, d) for d in datasets(config)]


def targets(config: dict) -> list[str]:
    """Every run and baseline CSV of the profile."""
    return run_csvs(config) + baseline_csvs(config)


def combined_parts(config: dict, name: str) -> list[tuple[str, str | list[str]]]:
    try:
        entry = combined(config)[name]
    except KeyError:
        raise ConfigError(f"segmentation.combined has no entry {name!r}") from None
    return [(str(model), layers) for model, layers in entry["parts"]]


def mmseg_config(config: dict, dataset: str, model: str, layer_set: str) -> str:
    """The mmseg config of a run: a combined entry's own ``configs``, else the section's, with placeholders filled."""
    entry = combined(config).get(layer_set) if model == COMBINED else None
    configs = (entry or {}).get("configs") or section(config).get("configs") or {}
    layout = kind(config, dataset)
    if layout not in configs:
        raise ConfigError(f"segmentation.configs has no mmseg config for dataset kind {layout!r}")
    first = combined_parts(config, layer_set)[0][0] if model == COMBINED else model
    family = model_entry(config, first)["family"]
    return configs[layout].format(family=family, set=layer_set.replace("-", "_"))


def run_parts(config: dict, model: str, layer_set: str) -> list[tuple[str, str | list[str]]]:
    return combined_parts(config, layer_set) if model == COMBINED else [(model, layer_set)]


def model_inputs(config: dict, model: str, layer_set: str) -> list[str]:
    return [f for m, _ in run_parts(config, model, layer_set) for f in model_input(config, m)]


def seg_train_args(config: dict, dataset: str, model: str, layer_set: str) -> str:
    """Every `diffact seg-train` argument of a run but the config, work dir, output and threads (shell-quoted)."""
    sec = section(config)
    args: list = []
    for part, layers in run_parts(config, model, layer_set):
        entry = model_entry(config, part)
        size = (entry.get("extraction") or {}).get("image_size", config["extraction"]["image_size"])
        args += ["--model", entry["source"], "--family", entry["family"],
                 "--layers", ",".join(layers) if isinstance(layers, list) else layers, "--image-size", size,
                 "--revision", entry.get("revision", ""), "--variant", entry.get("variant", "")]
    args += ["--data-root", root(config, dataset), "--seed", sec.get("seed", config["seed"])]
    if sec.get("iters"):
        args += ["--iters", sec["iters"]]
    if sec.get("dtype"):
        args += ["--dtype", sec["dtype"]]
    if sec.get("workers") is not None:
        args += ["--workers", sec["workers"]]
    if sec.get("resume"):
        args.append("--resume")
    options = (combined(config).get(layer_set) or {}).get("cfg_options") if model == COMBINED else None
    if options:
        args += ["--cfg-options", *options]
    args += ["--label", f"dataset={dataset}", "--label", f"model={model}", "--label", f"layer_set={layer_set}"]
    return " ".join(shlex.quote(str(a)) for a in args)


def table_plan(config: dict) -> list[dict]:
    """Every Table 2 (left) entry of the profile, for the notebook (runs and the sets declared unavailable)."""
    plan = []
    for d in datasets(config):
        layout = kind(config, d)
        for m in models(config):
            for s in section(config).get("layer_sets", []):
                plan.append({"dataset": d, "kind": layout, "model": m, "family": model_entry(config, m)["family"],
                             "layer_set": s, "unavailable": unavailable(config, m, s), "csv": run_csv(config, d, m, s),
                             "history": history_csv(run_csv(config, d, m, s)), "baseline": baseline_csv(config, d)})
        for name, entry in combined(config).items():
            plan.append({"dataset": d, "kind": layout, "model": COMBINED, "family": "", "layer_set": name,
                         "paper_method": entry.get("paper_method", ""), "note": entry.get("note", ""),
                         "unavailable": "", "csv": run_csv(config, d, COMBINED, name),
                         "history": history_csv(run_csv(config, d, COMBINED, name)),
                         "baseline": baseline_csv(config, d)})
    return plan


def table_plan_arg(config: dict) -> str:
    return shlex.quote(json.dumps(table_plan(config)))


def dataset_pattern(config: dict) -> str:
    return alternatives(datasets(config))


def model_pattern(config: dict) -> str:
    return alternatives([*models(config), COMBINED])


def figure_names(config: dict) -> list[str]:
    return [f"table2_left.{ext}" for ext in ("csv", "tex", "md")] if section(config) else []


def demo_data_args(config: dict) -> str:
    """``--size``/``--train``/``--val`` of make-demo-ade when segmentation.demo_data sets them."""
    from diffact.workflow.profile import optional_flags

    return optional_flags(section(config).get("demo_data") or {}, {"size": "--size", "train": "--train", "val": "--val"})
