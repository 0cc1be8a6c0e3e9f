"""The rehearsal profile (config/rehearsal.yaml) is the paper profile with only counts, dtypes, devices, resources and
paths changed, through `base:` inheritance (diffact.workflow.read_profile); its DAG is checked in test_paper_profile."""

from pathlib import Path

import pytest

from diffact import workflow as wf
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# What a rehearsal may change: counts (images, pairs, pixels, epochs, iterations, draws, splits, members, shards), the
# dtype and threads for CPU, devices, resources, and where things live. Everything else must be the paper's.
REHEARSAL_KEYS = {
    "profile", "results", "paper_figures", "hub_cache",
    "extraction.dtype", "extraction.torch_threads", "extraction.shards", "extraction.shards_by_store",
    "correspondence.table1.epochs", "correspondence.table1.pairs_per_epoch", "correspondence.table1.eval_every",
    "correspondence.table1.device", "correspondence.table1.noise_draws", "figures.pca_images",
    "properties.images", "properties.draws", "properties.pairs", "properties.control.steps",
    "scarce.protocol.members", "scarce.protocol.epochs", "scarce.protocol.threads", "scarce.protocol.device",
    "scarce.protocol.buffer_mb", "scarce.protocol.pixel_rate", "scarce.table2.splits", "scarce.table3.splits",
    "segmentation.iters", "segmentation.threads", "segmentation.dtype", "segmentation.workers",
    # the one job that cannot fit 24 GiB as the paper runs it runs its largest variant that does, and says so
    "segmentation.combined.xl-t.cfg_options", "segmentation.combined.xl-t.note",
}


NOT_REHEARSED = {"properties.models", "correspondence.practical.models"}


def flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def test_rehearsal_changes_only_counts_dtypes_resources_and_paths(monkeypatch):
    monkeypatch.chdir(ROOT)
    paper = flatten(wf.read_profile("config/paper.yaml"))
    rehearsal = flatten(wf.read_profile("config/rehearsal.yaml"))
    changed = {key for key in paper.keys() | rehearsal.keys() if paper.get(key) != rehearsal.get(key)}
    roots = {key for key in changed if key.startswith("datasets.") and key.endswith((".root", ".official_counts"))}
    resources = {key for key in changed if key.startswith("resources.")}
    per_store_shards = {key for key in changed if key.startswith("extraction.shards_by_store.")}
    # The DiTs are not rehearsed (no full-size stand-ins fit: config/rehearsal.yaml says why): those two lists
    # may drop exactly the transformer models, and nothing else.
    paper_config = wf.read_profile("config/paper.yaml")
    dits = {m for m in paper_config["models"] if wf.is_transformer(paper_config, m)}
    assert dits == {"pixart-sigma", "sd3-medium", "flux-dev"}
    for key in ("properties.models", "correspondence.practical.models"):
        assert [m for m in paper[key] if m not in dits] == rehearsal[key], key
    assert changed - roots - resources - per_store_shards - REHEARSAL_KEYS - NOT_REHEARSED == set()
    assert all(rehearsal[key].startswith("data/rehearsal/") for key in roots if key.endswith(".root"))
    # what must not change: models and their sizes, layer sets, prompts, the protocols' sizes
    for key in ("models.sdxl.source", "models.pgv2.extraction.image_size", "extraction.t", "scarce.protocol.size",
                "correspondence.table1.feature_size", "correspondence.layer_set", "datasets.spair.extraction.prompt"):
        assert rehearsal[key] == paper[key]
    assert wf.read_profile("config/rehearsal.yaml")["segmentation"]["iters"] < 80000


def test_a_derived_profile_merges_onto_its_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("base.yaml").write_text("a: {x: 1, y: [1, 2]}\nb: 2\n")
    Path("derived.yaml").write_text("base: base.yaml\na: {y: [3]}\nc: 4\n")
    assert wf.read_profile("derived.yaml") == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    Path("orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="base profile 'missing.yaml' does not exist"):
        wf.read_profile("orphan.yaml")
    Path("list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        wf.read_profile("list.yaml")
