"""What a profile's workflow costs, from its plan: jobs, images, U-Net forward passes, training iterations, disk
and memory per stage (``diffact budget``; no GPU, no weights and no datasets needed).

The *plan* is what the Snakefile would run for the config, derived with the same helpers the rules call
(:mod:`diffact.workflow`, :mod:`diffact.workflow.correspondence`, :mod:`diffact.workflow.segmentation`, and the
rule files' own logic for the properties and label-scarce sections, mirrored here function by function: the rule
files cannot be imported outside snakemake). Which feature stores exist (dataset × model × layer set), how many
images each holds, how often each model runs and on what, how long every training loop is, what each job writes.

*Per-unit costs* come from two places:

* shapes (bytes per stored image, channels of a segmentation head, size of a checkpoint) are computed from the
  models' U-Net configs on the ``meta`` device (:func:`stored_shapes`): exact, no benchmark needed;
* seconds per U-Net forward pass and peak RSS come from the benchmark file ``benchmarks/results/paper_scale.json``
  (``benchmarks/bench_paper_scale.py``). A model (at the plan's image size) that the file does not hold is
  "not measured": its time and memory are left empty, never guessed.

Image counts: a dataset root that exists is counted with the project's loaders
(:func:`diffact.data.registry.dataset_images`); otherwise the published count kept in
``src/diffact/data/reference/dataset_sizes.yaml`` is used, with its source and whether it is exact or a bound.

Counting conventions: a forward pass is one image through one U-Net at batch 1 (a batch of 2 counts 2), at the
model's image size; training iterations are optimiser steps (the label-scarce ensemble trains its 10 members in one
step; its count is the bound of ``max_epochs`` — DDPM-seg's early stop usually ends sooner); disk is what the jobs
leave in ``results/`` (feature shards, checkpoints), not the model weights in the Hugging Face cache.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from diffact import workflow as wf
from diffact.utils.errors import ConfigError, DataError

REFERENCE_SIZES = "dataset_sizes.yaml"
DEFAULT_BENCH = "benchmarks/results/paper_scale.json"
SCARCE_BENCH_NAME = "scarce_memory_paper.json"  # beside the benchmark file: the label-scarce job at paper scale
TEXT_TOKENS = 77  # CLIP's padded prompt length, all four paper models
STORAGE_BYTES = {"float16": 2, "float32": 4, "bfloat16": 2}
SAFETENSORS_DTYPES = {"float16": "F16", "float32": "F32", "bfloat16": "BF16"}
NOMINAL_IMAGE_ID = "category/2008_000000_0000"  # the length of a typical shard id (safetensors header metadata)
NOT_MEASURED = "not measured"
REPO_ROOT = Path(__file__).resolve().parents[2]  # a source checkout: config/, benchmarks/


# ---- inputs ------------------------------------------------------------------------------------------------------

def load_config(path: str | Path) -> dict:
    """A profile as the workflow reads it (a derived profile merged onto its ``base:``)."""
    config = wf.read_profile(path)
    if "models" not in config or "datasets" not in config:
        raise ConfigError(f"{path}: not a diffact profile (needs `models` and `datasets` sections)")
    return config


def load_reference_sizes(path: str | Path | None = None) -> dict:
    """The published dataset sizes (``src/diffact/data/reference/dataset_sizes.yaml``, or ``path``)."""
    if path is None:
        source = resources.files("diffact.data").joinpath("reference", REFERENCE_SIZES)
        return yaml.safe_load(source.read_text())
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset sizes file {path} does not exist")
    return yaml.safe_load(path.read_text())


def load_bench(path: str | Path) -> dict:
    """The benchmark file of ``bench_paper_scale.py``; a missing or unreadable file is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"benchmark file {path} does not exist (run `python benchmarks/bench_paper_scale.py`, "
                        f"or pass --bench)")
    try:
        bench = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable benchmark file ({err})") from err
    if not isinstance(bench, dict) or not isinstance(bench.get("models"), dict):
        raise DataError(f"{path}: not a bench_paper_scale.py result (no `models` mapping)")
    return bench


# ---- dataset image counts ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Count:
    """A number of images, where it comes from, and whether it is exact (False: a bound or a recalled value)."""

    images: int
    source: str
    exact: bool = True


def _on_disk(root: str | None) -> bool:
    return bool(root) and Path(root).exists()


def _counted(kind: str, root: str, split=None, subset=None, **options) -> Count:
    from diffact.data.registry import dataset_images

    where = f"counted on disk in {root}" + (f" (split {split})" if split else "") + (f" (subset {subset})" if subset else "")
    return Count(len(dataset_images(kind, root, split, subset, **options)), where, True)


def _ddpmseg_reference(entry: dict, sizes: dict) -> dict:
    name = entry.get("name") or Path(str(entry["root"])).name
    table = sizes.get("ddpmseg") or {}
    if name not in table:
        raise ConfigError(f"dataset {entry['root']}: no published size for DDPM-seg dataset {name!r} in "
                          f"{REFERENCE_SIZES} (known: {', '.join(table) or 'none'}); put the dataset on disk")
    return table[name]


def _spair_reference(split: str, subset: str | None, sizes: dict) -> Count:
    spair = sizes["spair"]
    if subset and subset != "all":
        known = (spair.get("subsets") or {}).get(subset)
        if known:
            return Count(int(known["images"]), f"{spair['source']}; {known['note']}", bool(known.get("exact")))
        match = re.fullmatch(r"(trn|val|test)-(\d+)", str(subset))
        if not match:
            raise ConfigError(f"SPair subset {subset!r}: not on disk and not a '<split>-<N>' name; no count known")
        pairs = int(match.group(2)) // spair["categories"] * spair["categories"]
        images = min(2 * pairs, spair["splits"][split]["images"])
        return Count(images, f"upper bound: 2 images per pair of subset {subset} ({pairs} pairs)", False)
    known = spair["splits"][split]
    return Count(int(known["images"]), f"{spair['source']}; {known['note']}", bool(known.get("exact")))


def dataset_count(config: dict, name: str, sizes: dict, split: str | None = None) -> Count:
    """Images of config dataset ``name`` as its feature store would hold them (``split``: one split of a
    segmentation dataset, e.g. ``train`` of a DDPM-seg folder, ``validation`` of ADE20K)."""
    entry = wf.dataset_entry(config, name)
    kind, root = entry["kind"], entry.get("root")
    if _on_disk(root):
        from diffact.data.registry import lister_options

        try:  # the entry's own options (SPair's subset policy, DDPM-seg's name), as extraction reads it
            split = entry.get("split", "test") if kind == "spair" else split or entry.get("split")
            return _counted(kind, root, split, entry.get("subset"), **lister_options(entry))
        except (DataError, ConfigError) as err:
            raise DataError(f"dataset {name}: {root} exists but cannot be counted ({err})") from err
    if entry.get("build"):
        raise ConfigError(f"dataset {name} is built by the workflow ({root} does not exist yet); the budget counts "
                          "real datasets (published sizes) or datasets already on disk")
    if kind == "spair":
        return _spair_reference(entry.get("split", "test"), entry.get("subset"), sizes)
    if kind == "ddpmseg":
        ref = _ddpmseg_reference(entry, sizes)
        splits = [split] if split and split != "all" else ["train", "test"]
        return Count(sum(int(ref[s]) for s in splits), ref["source"], bool(ref.get("exact")))
    if kind in ("ade20k", "cityscapes"):
        ref = sizes[kind]
        splits = [split] if split else [k for k, v in ref.items() if type(v) is int]
        return Count(sum(int(ref[s]) for s in splits), ref["source"], bool(ref.get("exact")))
    raise ConfigError(f"dataset {name}: no published size for kind {kind!r}; put the dataset on disk")


# ---- shapes from the U-Net configs (meta device) ------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _denoiser(source: str, build: str | None) -> tuple:
    """(U-Net on the meta device, text tokens, VAE factor) of a model entry: a known hub id, a pipeline folder,
    or a demo architecture the workflow builds."""
    if build:
        from diffact.models import demo

        return demo.listing_denoiser(build)
    from diffact.models.configs import listing_denoiser

    return listing_denoiser(source)


def model_unet(config: dict, model: str) -> tuple:
    entry = wf.model_entry(config, model)
    return _denoiser(str(entry["source"]), entry.get("build"))


def stored_shapes(unet, names: Iterable[str], image_size: int, vae_factor: int = 8,
                  text_tokens: int = TEXT_TOKENS) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each activation as a feature store holds it at ``image_size`` (maps: keys × grid; aggregated
    maps: n_sizes × tokens on the latent grid), in the given order."""
    from diffact.families.catalog import AGGREGATE_KIND
    from diffact.families.registry import family_of
    from diffact.extract.layersets import channel_total

    by_name = {a.name: a for a in family_of(unet).nameable(unet)}
    latent = image_size // vae_factor
    shapes = {}
    for name in names:
        act = by_name[name]
        if act.kind == AGGREGATE_KIND:
            shapes[name] = (channel_total(unet, [name], image_size, text_tokens, vae_factor), latent, latent)
        else:
            row = act.as_row((latent, latent), text_tokens)
            shapes[name] = (int(row["channels"]), int(row["height"]), int(row["width"]))
    return shapes


def safetensors_header_bytes(shapes: Mapping[str, tuple[int, ...]], storage_dtype: str,
                             image_id: str = NOMINAL_IMAGE_ID) -> int:
    """Length of a shard's safetensors header (the 8-byte length + the JSON, padded to 8 bytes), as written by
    :meth:`diffact.extract.store.FeatureStore.write` (offsets' digit counts make it approximate by a few bytes)."""
    size, offset, entries = STORAGE_BYTES[storage_dtype], 0, {"__metadata__": {"image_id": image_id}}
    for name, shape in sorted(shapes.items()):
        n = math.prod(shape) * size
        entries[name] = {"dtype": SAFETENSORS_DTYPES[storage_dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(entries, separators=(",", ":"))
    return 8 + -(-len(text) // 8) * 8


def shard_bytes(shapes: Mapping[str, tuple[int, ...]], storage_dtype: str) -> dict:
    """Bytes of one image's shard: the tensors and the whole file (tensors + header)."""
    tensors = sum(math.prod(s) for s in shapes.values()) * STORAGE_BYTES[storage_dtype]
    return {"tensor_bytes": tensors, "shard_bytes": tensors + safetensors_header_bytes(shapes, storage_dtype)}


@functools.lru_cache(maxsize=None)
def _set_layers(source: str, build: str | None, family: str, layer_set: str) -> tuple[str, ...]:
    from diffact.extract.layersets import resolve_layers_arg

    unet, _, _ = _denoiser(source, build)
    return tuple(resolve_layers_arg(unet, family, layer_set))


def set_layers(config: dict, model: str, layers) -> list[str]:
    """The activation names of a layer-set name or an explicit list, for a config model."""
    entry = wf.model_entry(config, model)
    value = ",".join(layers) if isinstance(layers, (list, tuple)) else str(layers)
    return list(_set_layers(str(entry["source"]), entry.get("build"), entry["family"], value))


def set_shapes(config: dict, model: str, layers, image_size: int) -> dict[str, tuple[int, int, int]]:
    unet, tokens, vae = model_unet(config, model)
    return stored_shapes(unet, set_layers(config, model, layers), image_size, vae, tokens)


def figure_maps_bytes(shapes: Mapping[str, tuple[int, int, int]], images: int, labels: bool) -> int:
    """Bytes of a figure-maps file (diffact.viz.figure_maps), uncompressed: per image and activation a float64 RGB
    map at the activation's resolution, and with labels a float64 similarity map and its query point."""
    per_pixel = 8 * (3 + (1 if labels else 0))
    return images * sum(h * w * per_pixel + (16 if labels else 0) for _, h, w in shapes.values())


# ---- the benchmark file -----------------------------------------------------------------------------------------

class Bench:
    """Per-unit costs measured by ``bench_paper_scale.py``, looked up by (model, image size)."""

    def __init__(self, data: dict | None, path: str | None = None):
        self.data = data or {"models": {}}
        self.path = path
        # The label-scarce job at the paper's scale (benchmarks/bench_scarce_memory.py --paper-scale), beside it.
        scarce = Path(path).with_name(SCARCE_BENCH_NAME) if path else None
        self.scarce = json.loads(scarce.read_text()) if scarce is not None and scarce.is_file() else None
        self.scarce_path = str(scarce) if self.scarce else None

    def scarce_rss(self, buffer_mb: float) -> tuple[int, str] | None:
        """Peak RSS of ``diffact scarce`` at the paper's scale when measured with this stream buffer (the buffer,
        not the number of images, bounds it: pixels stream from the store), and a line saying what was measured."""
        found = self.scarce
        if not found or float((found.get("protocol") or {}).get("buffer_mb", -1)) != float(buffer_mb):
            return None
        p = found["protocol"]
        return int(found["peak_rss_bytes"]), (
            f"measured: diffact scarce, {found['n_train']} × {found['size']}² px, {found['channels']} channels, "
            f"{p['members']} members, buffer {p['buffer_mb']:g} MiB ({self.scarce_path}, {found.get('measured')})")

    def entry(self, config: dict, model: str, image_size: int) -> dict | None:
        """The benchmark entry of a config model at ``image_size``: by name, else by the same source."""
        models = self.data.get("models") or {}
        source = wf.model_entry(config, model).get("source")
        candidates = [models.get(model)] + [e for e in models.values() if e.get("source") == source]
        for found in candidates:
            if found and int(found.get("image_size", -1)) == int(image_size):
                return found
        return None

    def why_missing(self, config: dict, model: str, image_size: int) -> str:
        models = self.data.get("models") or {}
        other = models.get(model)
        if other:
            return f"{NOT_MEASURED} at {image_size} px (the benchmark file has {model} at {other.get('image_size')} px)"
        return f"{NOT_MEASURED} ({model} is not in the benchmark file)"

    def seconds_per_pass(self, config, model, image_size) -> float | None:
        found = self.entry(config, model, image_size)
        return (found.get("forward") or {}).get("seconds_per_forward") if found else None

    def forward_rss(self, config, model, image_size) -> int | None:
        found = self.entry(config, model, image_size)
        return (found.get("forward") or {}).get("peak_rss_bytes") if found else None

    def store_measurement(self, config, model, image_size, layer_set, storage_dtype) -> dict | None:
        found = self.entry(config, model, image_size)
        if not found or found.get("storage_dtype", "float16") != storage_dtype:
            return None
        return ((found.get("layer_sets") or {}).get(layer_set) or {}).get("measured")

    def cuda_peak(self, config, model, image_size) -> int | None:
        found = self.entry(config, model, image_size)
        return (found.get("forward") or {}).get("cuda_peak_bytes") if found else None

    def summary(self) -> dict:
        return {"path": self.path, "date": self.data.get("date"), "machine": self.data.get("machine"),
                "dtype": self.data.get("dtype"),
                "models": {name: {"image_size": e.get("image_size"), "quick": e.get("quick"), "date": e.get("date")}
                           for name, e in (self.data.get("models") or {}).items()}}


# ---- the plan: stages ---------------------------------------------------------------------------------------------

@dataclass
class Stage:
    """One stage of the workflow (a group of rules) with its costs. ``passes``: (model, image size) → U-Net passes;
    ``rss``: the peak RSS of its largest job and where the number comes from; ``gpu_peak``: likewise on the GPU."""

    name: str
    description: str
    jobs: dict[str, int] = field(default_factory=dict)
    gpu_jobs: int = 0
    images: int = 0
    passes: dict[tuple[str, int], int] = field(default_factory=dict)
    other_passes: dict[str, int] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    disk_bytes: int = 0
    rss: list[tuple[int, str]] = field(default_factory=list)
    rss_missing: list[str] = field(default_factory=list)
    gpu_peak: list[tuple[int, str]] = field(default_factory=list)
    requested_mem_mb: int = 0
    notes: list[str] = field(default_factory=list)

    def add_jobs(self, config: dict, rule: str, n: int, resource_stage: str) -> None:
        if n <= 0:
            return
        self.jobs[rule] = self.jobs.get(rule, 0) + n
        res = wf.stage_resources(config, resource_stage)
        self.gpu_jobs += n if res.get("gpu") else 0
        self.requested_mem_mb = max(self.requested_mem_mb, int(res.get("mem_mb") or 0))

    def add_passes(self, model: str, image_size: int, n: int) -> None:
        if n > 0:
            self.passes[(model, image_size)] = self.passes.get((model, image_size), 0) + n

    def add_iterations(self, kind: str, n: int) -> None:
        if n > 0:
            self.iterations[kind] = self.iterations.get(kind, 0) + n


@dataclass
class StorePlan:
    dataset: str
    model: str
    layer_set: str
    image_size: int
    path: str
    count: Count
    layers: int
    channels: int
    bytes_per_image: int
    bytes_source: str
    shards: int | None = None  # None: the profile's (extraction.shards); a store written by one job says 1

    @property
    def disk_bytes(self) -> int:
        return self.count.images * self.bytes_per_image


class Planner:
    """Builds the stages of a config (see the module docstring); ``counts`` records every dataset count used."""

    def __init__(self, config: dict, sizes: dict, bench: Bench):
        self.config, self.sizes, self.bench = config, sizes, bench
        self.counts: dict[str, Count] = {}
        self.storage_dtype = (config.get("extraction") or {}).get("storage_dtype", "float32")
        self.shards = wf.extraction_shards(config)  # the default; a store may have its own (shards_by_store)

    # ---- helpers ----
    def count(self, dataset: str, split: str | None = None) -> Count:
        key = dataset if split is None else f"{dataset}:{split}"
        if key not in self.counts:
            self.counts[key] = dataset_count(self.config, dataset, self.sizes, split)
        return self.counts[key]

    def image_size(self, dataset: str, model: str) -> int:
        return wf.extraction_settings(self.config, dataset, model).image_size

    def section(self, name: str) -> dict:
        return self.config.get(name) or {}

    def extraction_rss(self, model: str, image_size: int, layer_set: str, feature_bytes_fp32: int,
                       copies: int = 1) -> tuple[int | None, str]:
        """Peak RSS of a job that runs ``model`` and holds ``copies`` float32 copies of one image's features."""
        measured = self.bench.store_measurement(self.config, model, image_size, layer_set, self.storage_dtype)
        if measured and measured.get("peak_rss_bytes") and copies == 1:
            return int(measured["peak_rss_bytes"]), f"measured: {model} {layer_set} store write at {image_size} px"
        forward = self.bench.forward_rss(self.config, model, image_size)
        if forward:
            return (int(forward) + copies * feature_bytes_fp32,
                    f"estimate: {model} forward RSS at {image_size} px + {copies} float32 copies of the {layer_set} features")
        return None, self.bench.why_missing(self.config, model, image_size)

    def note_rss(self, stage: Stage, value: int | None, source: str) -> None:
        if value is None:
            if source not in stage.rss_missing:
                stage.rss_missing.append(source)
        else:
            stage.rss.append((value, source))

    def note_gpu(self, stage: Stage, model: str, image_size: int) -> None:
        peak = self.bench.cuda_peak(self.config, model, image_size)
        if peak:
            stage.gpu_peak.append((int(peak), f"measured: {model} U-Net forward at {image_size} px on the GPU"))

    # ---- which feature stores the targets need (the rules' input functions, mirrored) ----
    def practical_models(self) -> list[str]:
        """Models whose practical set the workflow chooses by its validation screen (correspondence.practical)."""
        return wf.correspondence.practical_models(self.config)

    def store_requests(self) -> list[tuple[str, str, str, str]]:
        """(dataset, model, layer set, who needs it) for every store some target depends on, in DAG order: the
        workflow's own list (:func:`diffact.workflow.stores.requested_stores`), which also groups extract jobs."""
        return wf.stores.requested_stores(self.config)

    def corr_screen_models(self) -> list[str]:
        """Models with a pck_screen job: the correspondence section's (pck_table) and, when the properties take
        NN PCK, every property model (properties_table's `pck` input)."""
        corr, prop = self.section("correspondence"), self.section("properties")
        models = wf.correspondence.models(self.config)
        if prop.get("pck", True) and corr:
            models += self.prop_models()
        return list(dict.fromkeys(models))

    def prop_models(self) -> list[str]:
        return wf.properties.measured_models(self.config)

    def prop_scenes(self) -> list[str]:
        return wf.properties.scenes(self.config)

    def control_scene(self) -> str | None:
        return wf.properties.control_scene(self.config)

    def scarce_t2_runs(self) -> list[tuple[str, str]]:
        """(model, layer set) single-store runs of Table 2 (right): the workflow's own plan."""
        return [(m, s) for m, s in wf.scarce.t2_runs(self.config) if m != wf.scarce.COMBINED]

    def scarce_t2_combined_runs(self) -> dict[str, list[tuple[str, str]]]:
        """table2.combined entries that run (none of their parts unavailable): name → [(model, layer set)]."""
        return {name: [(m, s) for _, m, s in wf.scarce.t2_parts(self.config, wf.scarce.COMBINED, name)]
                for model, name in wf.scarce.t2_runs(self.config) if model == wf.scarce.COMBINED}

    def cmp_budget(self, model: str):
        return wf.compare.budget(self.config, model)

    def stores(self) -> list[StorePlan]:
        """Every feature store of the plan once (deduplicated by folder, as snakemake does by output path)."""
        seen: dict[str, StorePlan] = {}
        for dataset, model, layer_set, _ in self.store_requests():
            path = wf.store_dir(self.config, dataset, model, layer_set)
            if path in seen:
                continue
            size = self.image_size(dataset, model)
            shapes = set_shapes(self.config, model, layer_set, size)
            computed = shard_bytes(shapes, self.storage_dtype)
            measured = self.bench.store_measurement(self.config, model, size, layer_set, self.storage_dtype)
            if measured and measured.get("shard_bytes"):
                per_image, source = int(measured["shard_bytes"]), "measured (benchmark store write)"
            else:
                per_image, source = computed["shard_bytes"], "computed from the model config"
            seen[path] = StorePlan(dataset, model, layer_set, size, path, self.count(dataset), len(shapes),
                                   sum(s[0] for s in shapes.values()), per_image, source)
        return list(seen.values()) + self.filtered_stores()

    def filtered_stores(self) -> list[StorePlan]:
        """The label-scarce screens' stores of the filtered activations (scarce.screen.store_set: filtered): one
        unsharded scarce_filtered_store job per model and scene, holding the kept activations and Table 3's
        paper-generic set (workflow.compare)."""
        from diffact.workflow import compare as cmp_plan

        scarce = self.section("scarce")
        if not (scarce.get("screen") and cmp_plan.reads_filtered_store(self.config)):
            return []
        plans = []
        for model in scarce.get("models", []):
            layers = list(self.screen_kept(model))
            if not cmp_plan.paper_generic_unavailable(self.config, model):
                paper = set_layers(self.config, model, cmp_plan.paper_generic_set(self.config, model))
                layers += [name for name in paper if name not in layers]
            for scene in ("simple", "complex"):
                dataset = scarce[scene]
                size = self.image_size(dataset, model)
                shapes = set_shapes(self.config, model, layers, size)
                per_image = shard_bytes(shapes, self.storage_dtype)["shard_bytes"]
                path = os.path.dirname(cmp_plan.screen_store(self.config, model, scene))
                plans.append(StorePlan(dataset, model, cmp_plan.FILTERED_SET, size, path, self.count(dataset),
                                       len(shapes), sum(s[0] for s in shapes.values()), per_image,
                                       "computed from the model config", shards=1))
        return plans

    # ---- stages ----
    def stages(self) -> tuple[list[Stage], list[StorePlan]]:
        stores = self.stores()
        stages = [self.extract_stage(stores), self.noise_share_stage(), self.control_stage(),
                  self.screening_stage(), self.table1_stage(), self.properties_analysis_stage(),
                  self.scarce_table2_stage(), self.scarce_screen_stage(), self.table3_stage(),
                  self.segmentation_stage(), self.figures_stage()]
        return [s for s in stages if s.jobs], stores

    def extract_stage(self, stores: list[StorePlan]) -> Stage:
        stage = Stage("extract", "feature stores: one U-Net pass per image (extract_shard jobs; extract merges)")
        ex = self.section("extraction")
        per_image = max(1, int(ex.get("ensemble", 1))) * (1 + (int(ex.get("inversion_steps", 10))
                                                                 if ex.get("inversion", "none") == "ddim" else 0))
        # extraction.group: layer_set writes a group's stores in one extract-group job (rule per group)
        group_of = {os.path.dirname(done): group.rule for group in wf.stores.extract_groups(self.config)
                    for done in group.done_files(self.config)}
        groups_counted = set()
        for store in stores:
            shards = store.shards or wf.extraction_shards(self.config, store.dataset, store.model, store.layer_set)
            if store.layer_set == "filtered" and store.shards == 1:
                stage.add_jobs(self.config, "scarce_filtered_store", 1, "extract")
            elif store.path in group_of:
                if group_of[store.path] not in groups_counted:
                    stage.add_jobs(self.config, group_of[store.path], 1, "extract")
                    groups_counted.add(group_of[store.path])
            elif shards > 1:
                stage.add_jobs(self.config, "extract_shard", shards, "extract")
                stage.add_jobs(self.config, "extract", 1, "default")
            else:
                stage.add_jobs(self.config, "extract", 1, "extract")
            stage.images += store.count.images
            stage.add_passes(store.model, store.image_size, store.count.images * per_image)
            stage.disk_bytes += store.disk_bytes
            fp32 = store.bytes_per_image // STORAGE_BYTES[self.storage_dtype] * 4
            self.note_rss(stage, *self.extraction_rss(store.model, store.image_size, store.layer_set, fp32))
            self.note_gpu(stage, store.model, store.image_size)
        if per_image > 1:
            stage.notes.append(f"{per_image} U-Net passes per image (ensemble / DDIM inversion)")
        return stage

    def add_streamed_screen(self, stage: Stage, model: str, dataset: str, layer_set: str) -> None:
        """A streamed NN screen's model passes (one per image: the lower bound, reached when the cache holds each
        image until its last pair) and its GPU peak; it writes no store."""
        size = self.image_size(dataset, model)
        stage.add_passes(model, size, self.count(dataset).images)
        self.note_gpu(stage, model, size)

    def noise_share_stage(self) -> Stage:
        stage = Stage("noise_share", "P1 noise share: every pool activation over K noise draws (noise_share)")
        prop = self.section("properties")
        draws, limit = int(prop.get("draws", 4)), int(prop.get("images", 0))
        layer_set = prop.get("layer_set", "screen")
        for model in self.prop_models():
            for scene in self.prop_scenes():
                n = self.count(scene).images
                n = min(n, limit) if limit else n
                size = self.image_size(scene, model)
                stage.add_jobs(self.config, "noise_share", 1, "extract")
                stage.images += n
                stage.add_passes(model, size, n * draws)
                shapes = set_shapes(self.config, model, layer_set, size)
                fp32 = sum(math.prod(s) for s in shapes.values()) * 4
                # DrawMoments keeps a running mean and M2 beside the current draw: 3 float32 copies.
                self.note_rss(stage, *self.extraction_rss(model, size, layer_set, fp32, copies=3))
                self.note_gpu(stage, model, size)
        return stage

    def control_stage(self) -> Stage:
        stage = Stage("control", "Fig 15 control U-Net: training and its feature stores (train_control_unet, "
                                 "control_features)")
        prop = self.section("properties")
        if not (prop.get("control") and self.control_scene()):
            return stage
        from diffact.models.control_unet import ControlConfig

        size = int(self.section("extraction").get("image_size", 512))
        stage.add_jobs(self.config, "train_control_unet", 1, "train_unet")
        stage.add_iterations("control U-Net training steps", int(prop["control"].get("steps", 60)))
        per_image = control_store_bytes(size)
        draws, limit = int(prop.get("draws", 4)), int(prop.get("images", 0))
        for scene in self.prop_scenes():
            n = self.count(scene).images
            n = min(n, limit) if limit else n
            stage.add_jobs(self.config, "control_features", 1, "extract")
            stage.images += n
            stage.other_passes[f"control-unet@{size}px"] = stage.other_passes.get(f"control-unet@{size}px", 0) + n * (1 + draws)
            stage.disk_bytes += n * per_image
        stage.notes.append(f"control U-Net ({ControlConfig().channels} channels) at {size} px: float32 store, "
                           f"{per_image / 2**20:.1f} MiB per image; its passes are not diffusion U-Net passes")
        stage.rss_missing.append(f"{NOT_MEASURED} (control U-Net jobs are not benchmarked; small)")
        return stage

    def screening_stage(self) -> Stage:
        stage = Stage("nn_screening", "per-activation NN PCK on the screening store (pck_screen, pck_pixels, "
                                      "pck_table; CPU)")
        corr = self.section("correspondence")
        if not corr:
            return stage
        models = self.corr_screen_models()
        stage.add_jobs(self.config, "pck_screen", len(models), "extract")
        stage.add_jobs(self.config, "pck_pixels", 1 if corr.get("pixel_patch") else 0, "analysis")
        stage.add_jobs(self.config, "pck_table", 1, "default")
        n = self.count(corr["dataset"]).images
        stage.images += n * len(models)
        # The screens stream: each image's pool is extracted in the job (once per image while the feature cache,
        # --buffer-mb, holds it until its last pair; more passes when it does not), scored, and dropped.
        for model in models:
            self.add_streamed_screen(stage, model, corr["dataset"], corr["layer_set"])
        practical = self.practical_models()
        if practical:
            stage.add_jobs(self.config, "practical_screen", len(practical), "extract")
            stage.add_jobs(self.config, "practical_set", len(practical), "default")
            stage.add_jobs(self.config, "practical_nn", len(practical), "extract")
            stage.add_jobs(self.config, "practical_table", 1, "default")
            stage.images += (self.count(corr["practical"]["select_on"]).images + n) * len(practical)
            for model in practical:
                self.add_streamed_screen(stage, model, corr["practical"]["select_on"], corr["layer_set"])
                # practical_nn streams the screened pool again and scores the chosen set (no pool store)
                self.add_streamed_screen(stage, model, corr["dataset"], corr["layer_set"])
        stage.rss_missing.append(f"{NOT_MEASURED} (the streamed screens' feature cache is bounded by --buffer-mb; "
                                 "CPU analysis jobs are not benchmarked)")
        return stage

    def table1_stage(self) -> Stage:
        from diffact.tasks.correspondence import aggregation
        from diffact.workflow import correspondence as corr_plan

        stage = Stage("table1", "Table 1: aggregation-conv training and evaluation (corr_train, corr_evaluate, "
                                "corr_table1)")
        settings = corr_plan.table1_settings(self.config)
        if not settings:
            return stage
        entries = [e for e in corr_plan.table1_entries(self.config) if e.runs]
        steps = int(settings["epochs"]) * int(settings["pairs_per_epoch"])
        written = len(aggregation.evaluation_steps(steps, int(settings["eval_every"])))
        checkpoints = 1  # corr-train --keep-best (workflow.correspondence.train_options): the one heldout reads
        trn = corr_plan.split_dataset(self.config, "trn")
        if "trained" in settings["methods"]:
            stage.add_jobs(self.config, "corr_train", len(entries), "corr_train")
            for entry in entries:
                channels = sum(sum(s[0] for s in set_shapes(self.config, m, ls, self.image_size(trn, m)).values())
                               for m, ls in entry.parts)
                out = aggregation.aggregation_out_channels(channels, len(entry.parts))
                weight = channels * out * 9 * 4
                stage.add_iterations("aggregation-conv steps", steps)
                stage.disk_bytes += checkpoints * (weight + 1024)
            stage.notes.append(f"{checkpoints} of {written} conv checkpoints kept per training run (float32 C×C'×3×3 "
                               "each; --keep-best: the one heldout selects, one more while a better one is written)")
            if corr_plan.streams(self.config):
                self.add_table1_stream_passes(stage, settings, entries, steps, written)
        stage.add_jobs(self.config, "corr_evaluate", len(corr_plan.result_runs(self.config)), "corr_eval")
        stage.add_jobs(self.config, "corr_table1", 1, "default")
        stage.rss_missing.append(f"{NOT_MEASURED} (correspondence training/evaluation is not benchmarked)")
        return stage

    def add_table1_stream_passes(self, stage: Stage, settings: dict, entries, steps: int, written: int) -> None:
        """``noise: stream``: one pass per model part, image and visit: 2 per training step (an upper bound: a pair
        without shared keypoints is skipped), 2 per validation pair at each of the ``written`` validations, and the
        NN on val once more (its own job)."""
        from diffact.workflow import correspondence as corr_plan

        val = corr_plan.split_dataset(self.config, "val")
        val_pairs, test_pairs = self.pair_count(settings, "val"), self.pair_count(settings, "test")
        nn_val = "nn" in settings["methods"] and "paper" in settings["protocols"]
        heldout = len(settings["methods"]) if "heldout" in settings["protocols"] else 0
        visits = 2 * steps + 2 * val_pairs * (written + (1 if nn_val else 0)) + 2 * test_pairs * heldout
        for entry in entries:
            for model, _ in entry.parts:
                stage.add_passes(model, self.image_size(val, model), visits)
                stage.images += visits
        stage.notes.append(f"noise: stream: every image extracted anew per visit, {visits:,} passes per model part "
                           f"(2 × {steps:,} training steps + 2 × {val_pairs} val pairs × {written} validations"
                           + (" + the NN on val" if nn_val else "")
                           + (f" + 2 × {test_pairs} test pairs × {heldout} heldout numbers" if heldout else "")
                           + "); no Table 1 store")

    def pair_count(self, settings: dict, role: str) -> int:
        """Pairs per evaluation of split ``role`` (val, test): the N of a ``<split>-N`` subset, else the split's image
        count (a stand-in: SPair does not publish its per-split pair counts here)."""
        import re

        from diffact.workflow import correspondence as corr_plan

        found = re.fullmatch(rf"{role}-(\d+)", str(settings.get(f"{role}_subset") or ""))
        if found:
            return int(found.group(1))
        return self.count(corr_plan.split_dataset(self.config, role)).images

    def properties_analysis_stage(self) -> Stage:
        stage = Stage("properties", "P2/P3 streamed from the models (and the figure maps), property tables, the "
                                    "qualitative filter")
        prop = self.section("properties")
        if not prop:
            return stage
        models, scenes = self.prop_models(), self.prop_scenes()
        control = 1 if prop.get("control") and self.control_scene() else 0
        # property_maps streams each diffusion model's features (the store's own extract arguments, nothing stored)
        # and writes the figure maps beside its table; the control's reads the store control_features writes.
        stage.add_jobs(self.config, "property_maps", len(models) * len(scenes), "extract")
        stage.add_jobs(self.config, "control_property_maps", control * len(scenes), "analysis")
        stage.add_jobs(self.config, "properties_table", len(models) + control, "default")
        stage.add_jobs(self.config, "qualitative_filter", len(prop.get("filter_models", {})), "default")
        stage.add_jobs(self.config, "properties_unavailable", 1, "default")
        limit = int(prop.get("images", 0))
        for scene in scenes:
            n = min(self.count(scene).images, limit) if limit else self.count(scene).images
            stage.images += n * (len(models) + control)
            for model in models:  # one pass per measured image (whole batches: the lower bound)
                size = self.image_size(scene, model)
                stage.add_passes(model, size, n)
                self.note_gpu(stage, model, size)
                shapes = set_shapes(self.config, model, prop.get("layer_set", "screen"), size)
                stage.disk_bytes += figure_maps_bytes(shapes, min(n, wf.properties.FIGURE_IMAGES), labels=True)
        if scenes:
            stage.notes.append(f"figure maps (property_maps): {wf.properties.FIGURE_IMAGES} images per model and scene, "
                               "float64 maps at each activation's resolution, counted uncompressed")
        stage.rss_missing.append(f"{NOT_MEASURED} (the streamed property maps hold one batch of features; they are "
                                 "not benchmarked)")
        return stage

    # label-scarce segmentation
    def scarce_protocol(self) -> dict:
        from diffact.tasks.scarce.settings import ScarceConfig
        from diffact.utils.args import default_of

        # buffer_mb: what `diffact scarce-*` uses when the profile does not set it (the demo's does not)
        defaults = {"size": 256, "members": 10, "epochs": 100, "pixel_rate": 1.0, "batch_size": 64,
                    "buffer_mb": default_of(ScarceConfig, "buffer_mb")}
        return {**defaults, **(self.section("scarce").get("protocol") or {})}

    def scarce_steps(self, scene: str, splits: int) -> tuple[int, Count]:
        """Upper bound of optimiser steps of one label-scarce run (all members step together)."""
        p = self.scarce_protocol()
        dataset = self.section("scarce")[scene]
        train = self.count(dataset, "train")
        pixels = int(train.images * p["size"] ** 2 * float(p["pixel_rate"]))
        return splits * int(p["epochs"]) * (pixels // int(p["batch_size"])), train

    def scarce_table2_stage(self) -> Stage:
        stage = Stage("scarce_table2", "Table 2 (right): 10-MLP ensembles on the stores of the simple dataset "
                                       "(scarce_set)")
        scarce = self.section("scarce")
        if not scarce or not scarce.get("table2"):
            return stage
        splits = int(scarce["table2"].get("splits", 5))
        for _ in [*self.scarce_t2_runs(), *self.scarce_t2_combined_runs()]:
            steps, train = self.scarce_steps("simple", splits)
            stage.add_jobs(self.config, "scarce_set", 1, "scarce")
            stage.add_iterations("pixel-classifier steps (≤, max_epochs)", steps)
            stage.images += self.count(scarce["simple"]).images
        self._scarce_notes(stage)
        return stage

    def screen_kept(self, model: str) -> list[str]:
        from diffact.analysis.filter import qualitative_filter

        scarce = self.section("scarce")
        family = wf.model_entry(self.config, model)["family"]
        candidates = set_layers(self.config, model, scarce["screen"].get("filter_set", "pool"))
        return qualitative_filter(candidates, family)

    def scarce_screen_stage(self) -> Stage:
        stage = Stage("scarce_screen", "Tables 4-6: every filtered activation alone, simple and complex dataset "
                                       "(scarce_filter, scarce_screen, scarce_compare)")
        scarce = self.section("scarce")
        if not scarce or not scarce.get("screen"):
            return stage
        splits = int(scarce["screen"].get("splits", 5))
        models = list(scarce.get("models", []))
        stage.add_jobs(self.config, "scarce_filter", len(models), "default")
        stage.add_jobs(self.config, "scarce_compare", len(models), "default")
        for model in models:
            kept = len(self.screen_kept(model))
            for scene in ("simple", "complex"):
                steps, _ = self.scarce_steps(scene, splits)
                stage.add_jobs(self.config, "scarce_screen", 1, "screen")
                stage.add_iterations("pixel-classifier steps (≤, max_epochs)", kept * steps)
                stage.images += kept * self.count(scarce[scene]).images
            stage.notes.append(f"{model}: {kept} activations kept by the qualitative filter, each run alone")
        self._scarce_notes(stage)
        return stage

    def table3_stage(self) -> Stage:
        stage = Stage("scarce_table3", "Table 3: the generic, paper-generic and specific sets (scarce_table3_run)")
        scarce = self.section("scarce")
        t3 = scarce.get("table3") or {}
        if not (scarce and scarce.get("screen") and t3):
            return stage
        splits = int(t3.get("splits", 5))
        for model in wf.compare.t3_models(self.config):
            # the workflow's own settings: the paper's fixed generic set as a third row, unless
            # scarce.table2.unavailable says the model lacks its layers
            for _setting in wf.compare.t3_settings(self.config, model):
                for scene in ("simple", "complex"):
                    steps, _ = self.scarce_steps(scene, splits)
                    stage.add_jobs(self.config, "scarce_table3_run", 1, "scarce")
                    stage.add_iterations("pixel-classifier steps (≤, max_epochs)", steps)
                    stage.images += self.count(scarce[scene]).images
        self._scarce_notes(stage)
        return stage

    def _scarce_notes(self, stage: Stage) -> None:
        p = self.scarce_protocol()
        stage.notes.append(f"steps ≤ splits × {p['epochs']} epochs × (train images × {p['size']}² px × "
                           f"{p['pixel_rate']} / batch {p['batch_size']}); each step trains {p['members']} members")
        measured = self.bench.scarce_rss(p["buffer_mb"])
        if measured:
            self.note_rss(stage, *measured)
        else:
            stage.rss_missing.append(f"{NOT_MEASURED} (no label-scarce benchmark with buffer_mb {p['buffer_mb']:g}: "
                                     f"benchmarks/bench_scarce_memory.py --paper-scale --out benchmarks/results)")

    # semantic segmentation
    def segmentation_stage(self) -> Stage:
        from diffact.workflow import segmentation as segplan

        stage = Stage("segmentation", "Table 2 (left): mmseg training + slide evaluation with on-the-fly "
                                      "activations (seg_train, seg_baseline)")
        if not segplan.section(self.config):
            return stage
        runs = [(d, m, s) for d, m, s in segplan.runs(self.config)]
        runs += [(d, segplan.COMBINED, name) for d in segplan.datasets(self.config) for name in segplan.combined(self.config)]
        described: set[str] = set()
        for dataset, model, layer_set in runs:
            schedule = seg_schedule(self.config, dataset, model, layer_set)
            train, val = self.count(dataset, schedule["train_split"]), self.count(dataset, schedule["val_split"])
            windows = self.val_windows(dataset, schedule)
            stage.add_jobs(self.config, "seg_train", 1, "segmentation")
            stage.images += train.images + val.images
            stage.add_iterations("mmseg iterations", schedule["iters"])
            parts = segplan.run_parts(self.config, model, layer_set)
            for part, _ in parts:
                size = self.part_image_size(part)
                stage.add_passes(part, size, schedule["iters"] * schedule["batch"] + schedule["evaluations"] * windows)
                self.note_gpu(stage, part, size)
            head = segmentor_trainable(self.config, parts, schedule["num_classes"], schedule["head_channels"])
            # the last checkpoint is written without AdamW's moments (segmentation.checkpoints.FinalCheckpointHook)
            stage.disk_bytes += (schedule["checkpoints"] - 1) * head["checkpoint_bytes"] + head["final_checkpoint_bytes"]
            if dataset not in described:
                described.add(dataset)
                stage.notes.append(f"{dataset}: per run {schedule['iters']} iterations × batch {schedule['batch']} "
                                   f"(training crops) + {schedule['evaluations']} slide evaluations × {windows} windows "
                                   f"({val.images} {schedule['val_split']} images); {schedule['checkpoints']} of "
                                   f"{schedule['checkpoints_written']} checkpoints kept"
                                   + (" (max_keep_ckpts; one more while the next is written)"
                                      if schedule["checkpoints"] < schedule["checkpoints_written"] else ""))
            stage.notes.append(f"{dataset} {model}/{layer_set}: levels {head['levels']}, "
                               f"{head['params'] / 1e6:.1f} M trainable parameters, checkpoint "
                               f"{human_bytes(head['checkpoint_bytes'])}, the final one (weights only) "
                               f"{human_bytes(head['final_checkpoint_bytes'])}")
        stage.add_jobs(self.config, "seg_baseline", len(segplan.datasets(self.config)), "default")
        stage.rss_missing.append(f"{NOT_MEASURED} (mmseg training is not benchmarked)")
        return stage

    def part_image_size(self, model: str) -> int:
        entry = wf.model_entry(self.config, model)
        return int((entry.get("extraction") or {}).get("image_size", self.section("extraction").get("image_size", 512)))

    def val_windows(self, dataset: str, schedule: dict) -> int:
        """Slide-inference windows over the validation split: from the images' sizes when the root is on disk,
        else from the nominal size in the sizes file."""
        entry = wf.dataset_entry(self.config, dataset)
        crop, stride, scale = schedule["crop"], schedule["stride"], schedule["test_scale"]
        if _on_disk(entry.get("root")):
            from PIL import Image

            from diffact.data.registry import dataset_images

            total = 0
            for _, path in dataset_images(entry["kind"], entry["root"], schedule["val_split"]):
                with Image.open(path) as image:
                    total += slide_windows(*image.size, scale, crop, stride)
            return total
        nominal = self.sizes[entry["kind"]]["val_image_size"]
        per_image = slide_windows(nominal["width"], nominal["height"], scale, crop, stride)
        return per_image * self.count(dataset, schedule["val_split"]).images

    def figures_stage(self) -> Stage:
        """Notebooks and the index (CPU, minutes): job counts only."""
        stage = Stage("figures", "figure and table notebooks, the paper-items index, Fig 3's streamed PCA maps")
        cfg, prop, corr = self.config, self.section("properties"), self.section("correspondence")
        models = self.prop_models()
        control = bool(prop.get("control") and self.control_scene())
        unets = [m for m in models if not wf.is_transformer(cfg, m)]  # the U-Net-layout figures: U-Nets only
        rules = {"fig02_architecture": len([m for m in cfg["models"] if not wf.is_transformer(cfg, m)]),
                 "figures_index": 1}
        if corr:
            rules["fig_demo_nn_pck"] = 1
        from diffact.workflow import correspondence as corr_plan

        if corr_plan.table1_settings(cfg):
            rules.update(table1_notebook=1, fig01_notebook=1)
        if prop:
            rules["fig_properties_filter"] = 1
            if models:
                rules["fig_properties_numbers"] = 1
                for rule in ("fig03_properties", "fig05_13_scenes", "fig16_18_within"):
                    rules[rule] = len(unets)
                rules["fig04_pck"] = len(unets) if (prop.get("pck", True) and corr) else 0
                rules["fig_properties_unet_vs_dit"] = 1 if 0 < len(unets) < len(models) else 0
                rules["fig15_control"] = 1 if control else 0
        figures = self.section("figures") or {}
        if figures.get("pca_model"):
            rules["fig03_pca"] = 1
            # pca_maps streams the first pca_images images of the figure's store (nothing stored) for fig03_pca
            stage.add_jobs(cfg, "pca_maps", 1, "extract")
            dataset, model = wf.figures.pca_dataset(cfg), figures["pca_model"]
            size = self.image_size(dataset, model)
            n = min(wf.figures.pca_images(cfg), self.count(dataset).images)
            stage.images += n
            stage.add_passes(model, size, n)
            self.note_gpu(stage, model, size)
            layer_set = figures.get("layer_set", corr.get("layer_set", wf.figures.DEFAULT_PCA_SET))
            shapes = set_shapes(cfg, model, figures.get("pca_layers") or layer_set, size)
            stage.disk_bytes += figure_maps_bytes(shapes, n, labels=False)
        scarce = self.section("scarce")
        if scarce and scarce.get("table2"):
            rules["table2_right_notebook"] = 1
        if scarce and scarce.get("screen"):
            rules["table4_6_notebook"] = len(scarce.get("models", []))
            t3 = scarce.get("table3") or {}
            rules["table3_notebook"] = 1 if t3 and [m for m in t3.get("models", []) if m in scarce.get("models", [])] else 0
        if self.section("segmentation"):
            rules["table2_left_notebook"] = 1
        if any(m.get("build") for m in cfg["models"].values()):
            rules["fig_demo_loss"] = 1
        for rule, n in rules.items():
            stage.add_jobs(cfg, rule, n, "notebook")
        return stage


# ---- segmentation: the mmseg schedule and the size of a checkpoint -------------------------------------------------

def slide_windows(width: int, height: int, scale: tuple[int, int], crop: tuple[int, int], stride: tuple[int, int]) -> int:
    """Windows of mmseg's slide inference over an image after the test pipeline's keep-ratio ``Resize(scale)``."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    w, h = int(width * factor + 0.5), int(height * factor + 0.5)
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    rows = max(h - h_crop + h_stride - 1, 0) // h_stride + 1
    cols = max(w - w_crop + w_stride - 1, 0) // w_stride + 1
    return rows * cols


@functools.lru_cache(maxsize=None)
def _mmseg_config(path: str) -> dict:
    """The values of an mmseg config that set the run's cost (mmengine reads the file and its _base_ chain)."""
    from mmengine.config import Config

    found = Path(path)
    if not found.is_file() and not found.is_absolute():  # profiles name them relative to the repository root
        found = REPO_ROOT / path
    if not found.is_file():
        raise ConfigError(f"segmentation config {path} does not exist")
    cfg = Config.fromfile(str(found), import_custom_modules=False)
    test = next((s for s in cfg.val_dataloader.dataset.pipeline if s["type"] == "Resize"), None)
    prefix = cfg.train_dataloader.dataset.data_prefix.img_path
    val_prefix = cfg.val_dataloader.dataset.data_prefix.img_path
    from diffact.tasks.segmentation.run import test_repeats_validation

    return {"iters": int(cfg.train_cfg.max_iters), "val_interval": int(cfg.train_cfg.get("val_interval", 0) or 0),
            "validates": cfg.get("val_cfg") is not None and cfg.get("val_dataloader") is not None,
            "test_repeats_validation": test_repeats_validation(cfg),
            "batch": int(cfg.train_dataloader.batch_size),
            "checkpoint_interval": int(cfg.default_hooks.checkpoint.interval),
            # mmengine's CheckpointHook keeps every checkpoint unless max_keep_ckpts > 0 (then the newest ones).
            "max_keep_ckpts": int(cfg.default_hooks.checkpoint.get("max_keep_ckpts", -1)),
            "crop": tuple(cfg.model.test_cfg.crop_size), "stride": tuple(cfg.model.test_cfg.stride),
            "test_scale": tuple(test["scale"]) if test else (10**9, 10**9),
            "num_classes": int(cfg.model.decode_head.num_classes),
            "head_channels": int(cfg.model.decode_head.channels),
            "train_split": Path(prefix).name, "val_split": Path(val_prefix).name}


def seg_schedule(config: dict, dataset: str, model: str, layer_set: str) -> dict:
    """Iterations, batch, evaluations and checkpoints of one seg_train job (the mmseg config + the profile's
    `segmentation.iters`, as `diffact seg-train` applies it)."""
    from diffact.workflow import segmentation as segplan

    schedule = dict(_mmseg_config(segplan.mmseg_config(config, dataset, model, layer_set)))
    iters = int(segplan.section(config).get("iters") or schedule["iters"])
    interval = schedule["val_interval"] or iters
    interval = min(interval, iters)
    schedule["iters"] = iters
    # mmengine validates every `interval` iterations and after the last one; the final test is that last
    # validation again where both are the same evaluation (`diffact seg-train` then reuses it), else one more.
    validations = (iters // interval + (1 if iters % interval else 0)) if schedule["validates"] else 0
    schedule["evaluations"] = validations + (0 if validations and schedule["test_repeats_validation"] else 1)
    every = schedule["checkpoint_interval"]
    written = iters // every + (1 if iters % every else 0)  # + save_last when not on an interval
    keep = schedule["max_keep_ckpts"]
    schedule["checkpoints_written"] = written
    schedule["checkpoints"] = min(written, keep) if keep > 0 else written  # what stays on disk
    return schedule


def resblock_params(channels: int) -> tuple[int, int]:
    """(parameters, buffers) of :class:`diffact.tasks.segmentation.blocks.ResBlock`: 2 × (3×3 conv + BN)."""
    return 2 * (9 * channels * channels + channels) + 2 * 2 * channels, 2 * 2 * channels


def conv_module_params(c_in: int, c_out: int, kernel: int) -> tuple[int, int]:
    """mmcv ConvModule with a norm (conv without bias + BN)."""
    return kernel * kernel * c_in * c_out + 2 * c_out, 2 * c_out


def uper_head_params(in_channels: list[int], channels: int, num_classes: int) -> tuple[int, int]:
    """(parameters, buffers) of mmseg's UPerHead with pool scales (1..n) (the paper's rule) and its conv_seg."""
    n, last = len(in_channels), in_channels[-1]
    modules = [conv_module_params(last, channels, 1)] * n  # PPM, one per pool scale
    modules.append(conv_module_params(last + n * channels, channels, 3))  # bottleneck
    modules += [conv_module_params(c, channels, 1) for c in in_channels[:-1]]  # lateral convs
    modules += [conv_module_params(channels, channels, 3)] * (n - 1)  # fpn convs
    modules.append(conv_module_params(n * channels, channels, 3))  # fpn bottleneck
    params = sum(p for p, _ in modules) + channels * num_classes + num_classes
    return params, sum(b for _, b in modules)


def fcn_head_params(in_channels: int, channels: int, num_classes: int) -> tuple[int, int]:
    """mmseg's FCNHead with one 3×3 conv (the paper's auxiliary head) and its conv_seg."""
    p, b = conv_module_params(in_channels, channels, 3)
    return p + channels * num_classes + num_classes, b


def segmentor_trainable(config: dict, parts, num_classes: int, head_channels: int = 512) -> dict:
    """Trainable parameters of a DiffusionSegmentor (ResBlocks, UPerHead, FCN head) and the size of an mmengine
    checkpoint: float32 weights and buffers + AdamW's two moments per parameter; the final one, written without
    the optimizer (``final_checkpoint_bytes``), the weights and buffers only. The frozen diffusion models are in
    neither (they live outside the segmentor's module tree)."""
    from diffact.tasks.segmentation import levels as lv

    part_levels = []
    for model, layers in parts:
        unet, tokens, vae = model_unet(config, model)
        entry = wf.model_entry(config, model)
        size = int((entry.get("extraction") or {}).get("image_size", (config.get("extraction") or {}).get("image_size", 512)))
        infos = lv.layer_infos(unet, set_layers(config, model, layers), size, vae, tokens)
        part_levels.append(lv.group_by_resolution(infos))
    params = buffers = 0
    for levels in part_levels:
        for level in levels:
            for info in level:
                p, b = resblock_params(info.channels)
                params, buffers = params + p, buffers + b
            p, b = resblock_params(sum(i.channels for i in level))
            params, buffers = params + p, buffers + b
    if len(part_levels) > 1:
        widths = lv.combine_levels(part_levels, [m for m, _ in parts])
        for width in widths:
            p, b = resblock_params(width)
            params, buffers = params + p, buffers + b
    else:
        widths = lv.level_channels(part_levels[0])
    layout = lv.head_layout(widths)
    for p, b in (uper_head_params(layout["in_channels"], head_channels, num_classes),
                 fcn_head_params(layout["aux_in_channels"], head_channels, num_classes)):
        params, buffers = params + p, buffers + b
    return {"levels": widths, "params": params, "buffers": buffers,
            "checkpoint_bytes": 4 * (params + buffers) + 4 * 2 * params, "final_checkpoint_bytes": 4 * (params + buffers)}


def control_store_bytes(image_size: int) -> int:
    """Bytes per image of the control U-Net's store (float32, every catalog activation) at ``image_size``."""
    import torch

    from diffact.models.control_unet import ControlConfig, ControlUNet, capture_activations

    with torch.no_grad():
        model = ControlUNet(ControlConfig(image_size=image_size)).eval()
        feats = capture_activations(model, torch.zeros(1, 3, image_size, image_size))
    shapes = {n: tuple(v.shape[1:]) for n, v in feats.items()}
    return shard_bytes(shapes, "float32")["shard_bytes"]


# ---- the budget ---------------------------------------------------------------------------------------------------

def _pass_key(model: str, size: int) -> str:
    return f"{model}@{size}px"


def _stage_record(stage: Stage, planner: Planner) -> dict:
    config, bench = planner.config, planner.bench
    seconds, missing = 0.0, []
    for (model, size), n in stage.passes.items():
        per = bench.seconds_per_pass(config, model, size)
        if per is None:
            missing.append(f"{_pass_key(model, size)}: {bench.why_missing(config, model, size)}")
        else:
            seconds += n * float(per)
    rss = max(stage.rss, default=None)
    gpu = max(stage.gpu_peak, default=None)
    return {
        "name": stage.name, "description": stage.description,
        "jobs": sum(stage.jobs.values()), "jobs_by_rule": dict(stage.jobs), "gpu_jobs": stage.gpu_jobs,
        "images": stage.images,
        "forward_passes": sum(stage.passes.values()),
        "forward_passes_by_model": {_pass_key(m, s): n for (m, s), n in stage.passes.items()},
        "other_passes": dict(stage.other_passes),
        "training_iterations": sum(stage.iterations.values()),
        "training_iterations_by_kind": dict(stage.iterations),
        "disk_bytes": stage.disk_bytes,
        "peak_rss_bytes": rss[0] if rss else None,
        "peak_rss_source": rss[1] if rss else (stage.rss_missing[0] if stage.rss_missing else NOT_MEASURED),
        "peak_rss_not_measured": [m for m in stage.rss_missing],
        "gpu_peak_bytes": gpu[0] if gpu else None,
        "gpu_peak_source": gpu[1] if gpu else NOT_MEASURED,
        "requested_mem_bytes": stage.requested_mem_mb * 10**6,  # snakemake's mem_mb: megabytes
        "unet_seconds": seconds if stage.passes and not missing else (None if stage.passes else 0.0),
        "unet_seconds_measured_part": seconds,
        "unet_seconds_not_measured": missing,
        "notes": list(stage.notes),
    }


def _merge_counts(records: list[dict], key: str) -> dict:
    out: dict = {}
    for record in records:
        for name, n in record[key].items():
            out[name] = out.get(name, 0) + n
    return out


def compute_budget(config: dict, bench: dict | None = None, sizes: dict | None = None, config_path: str | None = None,
                   bench_path: str | None = None) -> dict:
    """The budget of a profile as a JSON-able dict: ``stages``, ``total``, ``stores``, ``datasets``, ``bench``."""
    planner = Planner(config, sizes if sizes is not None else load_reference_sizes(), Bench(bench, bench_path))
    stages, stores = planner.stages()
    records = [_stage_record(s, planner) for s in stages]
    largest = max((r for r in records if r["peak_rss_bytes"] is not None), key=lambda r: r["peak_rss_bytes"], default=None)
    largest_gpu = max((r for r in records if r["gpu_peak_bytes"] is not None), key=lambda r: r["gpu_peak_bytes"], default=None)
    not_measured = [m for r in records for m in r["unet_seconds_not_measured"]]
    total = {
        "jobs": sum(r["jobs"] for r in records),
        "gpu_jobs": sum(r["gpu_jobs"] for r in records),
        "images": sum(r["images"] for r in records),
        "forward_passes": sum(r["forward_passes"] for r in records),
        "forward_passes_by_model": _merge_counts(records, "forward_passes_by_model"),
        "training_iterations": sum(r["training_iterations"] for r in records),
        "training_iterations_by_kind": _merge_counts(records, "training_iterations_by_kind"),
        "disk_bytes": sum(r["disk_bytes"] for r in records),
        "peak_rss_bytes": largest["peak_rss_bytes"] if largest else None,
        "peak_rss_stage": largest["name"] if largest else None,
        "peak_rss_source": largest["peak_rss_source"] if largest else NOT_MEASURED,
        "peak_rss_not_measured": sorted({r["name"] for r in records if r["peak_rss_not_measured"]}),
        "gpu_peak_bytes": largest_gpu["gpu_peak_bytes"] if largest_gpu else None,
        "requested_mem_bytes": max((r["requested_mem_bytes"] for r in records), default=0),
        "unet_seconds": None if not_measured else sum(r["unet_seconds_measured_part"] for r in records),
        "unet_seconds_measured_part": sum(r["unet_seconds_measured_part"] for r in records),
        "unet_seconds_not_measured": sorted(set(not_measured)),
    }
    per_model_seconds = {}
    for key, n in total["forward_passes_by_model"].items():
        model, size = key.rsplit("@", 1)
        per = planner.bench.seconds_per_pass(config, model, int(size[:-2]))
        per_model_seconds[key] = {"passes": n, "seconds_per_pass": per,
                                  "seconds": n * per if per is not None else None,
                                  "source": "benchmark" if per is not None else planner.bench.why_missing(config, model, int(size[:-2]))}
    return {
        "config": config_path, "profile": config.get("profile", "demo"),
        "storage_dtype": planner.storage_dtype, "shards": planner.shards,
        "bench": planner.bench.summary(),
        "datasets": {name: asdict(count) for name, count in planner.counts.items()},
        "stores": [{"dataset": s.dataset, "model": s.model, "layer_set": s.layer_set, "image_size": s.image_size,
                    "images": s.count.images, "images_exact": s.count.exact, "layers": s.layers, "channels": s.channels,
                    "bytes_per_image": s.bytes_per_image, "bytes_source": s.bytes_source, "disk_bytes": s.disk_bytes,
                    "path": s.path} for s in stores],
        "stages": records,
        "forward_passes_seconds": per_model_seconds,
        "total": total,
    }


# ---- text output ------------------------------------------------------------------------------------------------

def human_bytes(n: int | float | None) -> str:
    if n is None:
        return NOT_MEASURED
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_count(n: int | float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def human_seconds(s: float | None) -> str:
    if s is None:
        return NOT_MEASURED
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _markdown(rows: list[list[str]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def format_budget(budget: dict) -> str:
    """The budget as Markdown tables: stages and total, passes per model, stores, dataset counts, notes."""
    out = [f"# Budget of {budget['config'] or 'the profile'} (profile {budget['profile']})", ""]
    bench = budget["bench"]
    if bench.get("path"):
        measured = ", ".join(f"{m} at {e['image_size']} px{' (quick)' if e.get('quick') else ''}"
                             for m, e in bench["models"].items()) or "no model"
        machine = bench.get("machine") or {}
        out.append(f"Per-unit costs: {bench['path']} ({bench.get('date')}, {machine.get('device_name', '?')}, "
                   f"{bench.get('dtype')}); measured: {measured}.")
    else:
        out.append("Per-unit costs: no benchmark file; times and memory are not measured.")
    out.append("")
    header = ["stage", "jobs (GPU)", "images", "U-Net passes", "train iterations", "disk", "peak RSS / job",
              "U-Net time (bench)"]
    rows = []
    for r in budget["stages"]:
        time = human_seconds(r["unet_seconds"]) if r["forward_passes"] else "–"
        if r["forward_passes"] and r["unet_seconds"] is None:
            time = NOT_MEASURED if not r["unet_seconds_measured_part"] else f"≥ {human_seconds(r['unet_seconds_measured_part'])} (part)"
        rss = human_bytes(r["peak_rss_bytes"]) + ("*" if r["peak_rss_source"].startswith("estimate") else "")
        rows.append([r["name"], f"{r['jobs']} ({r['gpu_jobs']})", human_count(r["images"]),
                     human_count(r["forward_passes"]), human_count(r["training_iterations"]),
                     human_bytes(r["disk_bytes"]), rss, time])
    t = budget["total"]
    total_time = (human_seconds(t["unet_seconds"]) if t["unet_seconds"] is not None else
                  (NOT_MEASURED if not t["unet_seconds_measured_part"] else
                   f"≥ {human_seconds(t['unet_seconds_measured_part'])} (part)"))
    rows.append(["**total**", f"{t['jobs']} ({t['gpu_jobs']})", human_count(t["images"]), human_count(t["forward_passes"]),
                 human_count(t["training_iterations"]), human_bytes(t["disk_bytes"]),
                 human_bytes(t["peak_rss_bytes"]) + (f" ({t['peak_rss_stage']})" if t["peak_rss_stage"] else ""),
                 total_time])
    out += _markdown(rows, header)
    out += ["", "\\* estimate: the model's measured forward RSS plus the job's float32 features. Peak RSS not "
            f"measured for: {', '.join(t['peak_rss_not_measured']) or 'none'} (see `requested mem` below).", ""]
    rows = [[k, human_count(v["passes"]), f"{v['seconds_per_pass']:.3g} s" if v["seconds_per_pass"] else v["source"],
             human_seconds(v["seconds"])] for k, v in budget["forward_passes_seconds"].items()]
    out += ["## U-Net forward passes by model and image size", ""]
    out += _markdown(rows, ["model@size", "passes", "s / pass (bench)", "U-Net time"])
    rows = [[r["name"], ", ".join(f"{k} {v}" for k, v in r["jobs_by_rule"].items()),
             ", ".join(f"{k} {human_count(v)}" for k, v in r["training_iterations_by_kind"].items()) or "–",
             human_bytes(r["requested_mem_bytes"]), human_bytes(r["gpu_peak_bytes"])]
            for r in budget["stages"]]
    out += ["", "## Jobs, iterations and memory per stage", ""]
    out += _markdown(rows, ["stage", "jobs by rule", "training iterations", "requested mem / job", "GPU peak / job"])
    rows = [[s["dataset"], s["model"], s["layer_set"], s["image_size"], f"{s['images']}{'' if s['images_exact'] else ' †'}",
             s["layers"], s["channels"], human_bytes(s["bytes_per_image"]), human_bytes(s["disk_bytes"]), s["bytes_source"]]
            for s in sorted(budget["stores"], key=lambda s: -s["disk_bytes"])]
    out += ["", f"## Feature stores ({len(budget['stores'])}, {budget['storage_dtype']}, "
                f"{budget['shards']} shard job(s) each)", ""]
    out += _markdown(rows, ["dataset", "model", "set", "px", "images", "layers", "channels", "bytes / image", "disk",
                            "bytes from"])
    out += ["", "† not an exact count: an upper bound or a published number not checked here (see the counts below)."]
    rows = [[name, c["images"], "exact" if c["exact"] else "bound / unverified", c["source"]]
            for name, c in budget["datasets"].items()]
    out += ["", "## Image counts used", ""]
    out += _markdown(rows, ["dataset[:split]", "images", "", "source"])
    notes = [f"- {r['name']}: {n}" for r in budget["stages"] for n in r["notes"]]
    notes += [f"- not measured: {m}" for m in t["unet_seconds_not_measured"]]
    out += ["", "## Notes", ""] + notes
    return "\n".join(out) + "\n"
